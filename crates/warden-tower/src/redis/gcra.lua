-- Charges every bucket of one call, or none: governor's GCRA on Redis's clock.
-- KEYS[i]: a bucket. ARGV[3i-2]: emission interval T (µs, may be fractional),
-- ARGV[3i-1]: cost n, ARGV[3i]: tolerance tau = T * (max - 1) (µs).
-- Returns {1} when charged, or {0, i, wait_us} for the first bucket without room.
-- A bucket's value is its theoretical arrival time (µs since the epoch); a missing key is a
-- full bucket, so each key expires when its bucket is full again (at most one window).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local T = tonumber(ARGV[3 * i - 2])
  local n = tonumber(ARGV[3 * i - 1])
  local tau = tonumber(ARGV[3 * i])
  -- A key charged twice in one call sees its own earlier charge.
  local tat = next[key] or tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local earliest = tat + T * (n - 1) - tau
  if now < earliest then
    return {0, i, math.ceil(earliest - now)}
  end
  next[key] = tat + T * n
end
for key, tat in pairs(next) do
  local ttl = math.max(1, math.ceil((tat - now) / 1000))
  redis.call('SET', key, string.format('%.0f', math.ceil(tat)), 'PX', ttl)
end
return {1}
