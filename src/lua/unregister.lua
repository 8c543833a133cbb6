-- Takes back what a registration wrote, for a Redis Cluster registration
-- that could not be completed in every device group: a device is removed
-- only while its sealed secret is still the one this registration wrote (a
-- random nonce makes each one unique), so that devices another request
-- registered stay.
-- KEYS per device: its record bucket, its secret bucket and its group's
-- counters. ARGV per device: field, sealed secret. Returns the devices removed.
local n, removed = #ARGV / 2, 0
for i = 1, n do
  local dkey, skey, ckey = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if redis.call('HGET', skey, ARGV[2 * i - 1]) == ARGV[2 * i] then
    redis.call('HDEL', dkey, ARGV[2 * i - 1])
    redis.call('HDEL', skey, ARGV[2 * i - 1])
    redis.call('HINCRBY', ckey, 'devices', -1)
    removed = removed + 1
  end
end
return removed
