-- Gives back what a charge took. KEYS[i]: a bucket; ARGV[i]: the amount T * n (µs).
-- A bucket that is full again is deleted, as if never charged.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    local back = tat - tonumber(ARGV[i])
    if back <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%.0f', math.ceil(back)), 'PX', math.max(1, math.ceil((back - now) / 1000)))
    end
  end
end
return #KEYS
