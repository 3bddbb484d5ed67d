-- What a bucket has used: units not yet refilled (0 for a full or missing bucket).
-- KEYS[1]: the bucket. ARGV[1]: emission interval T (µs, may be fractional).
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if tat <= now then return 0 end
return math.ceil((tat - now) / tonumber(ARGV[1]))
