-- Registers devices, all or nothing. The product was checked before (it
-- lives in another slot). KEYS per device: its record bucket, its secret
-- bucket and its group's counters; in a Redis Cluster one call holds the
-- devices of one group.
-- ARGV per device: field, record, sealed secret. Returns 0, or i > 0 when
-- the i-th device is already registered (nothing written then).
local n = #ARGV / 3
for i = 1, n do
  if redis.call('HEXISTS', KEYS[3 * i - 2], ARGV[3 * i - 2]) == 1 then return i end
end
for i = 1, n do
  redis.call('HSET', KEYS[3 * i - 2], ARGV[3 * i - 2], ARGV[3 * i - 1])
  redis.call('HSET', KEYS[3 * i - 1], ARGV[3 * i - 2], ARGV[3 * i])
  redis.call('HINCRBY', KEYS[3 * i], 'devices', 1)
end
return 0
