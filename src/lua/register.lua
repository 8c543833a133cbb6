-- Registers devices, all or nothing. KEYS[1]: the product; then per device
-- its record bucket and its secret bucket; last the counters (bd:stats).
-- ARGV per device: field, record,
-- sealed secret. Returns 0, -1 when the product does not exist, or i > 0
-- when the i-th device is already registered.
if redis.call('HEXISTS', KEYS[1], 'hr') == 0 then return -1 end
local n = #ARGV / 3
for i = 1, n do
  if redis.call('HEXISTS', KEYS[2 * i], ARGV[3 * i - 2]) == 1 then return i end
end
for i = 1, n do
  redis.call('HSET', KEYS[2 * i], ARGV[3 * i - 2], ARGV[3 * i - 1])
  redis.call('HSET', KEYS[2 * i + 1], ARGV[3 * i - 2], ARGV[3 * i])
end
redis.call('HINCRBY', KEYS[#KEYS], 'devices', n)
return 0
