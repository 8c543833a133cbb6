-- Records a successful bootstrap of a device, unless a distribution changed
-- its assignment since the request read it. KEYS[1]: the device's bucket,
-- KEYS[2]: its group's counters.
-- ARGV: field, the batch the request saw, now (base 36), the resolved
-- region's code (docs/key-schema.md, "Codes").
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
-- The record (docs/key-schema.md): batch;status;registered;activated;
-- lastBootstrap;lastRegion;notify, the times in base 36 (ARGV's "now" too).
-- The notify part is kept as it is.
local b, s, r, a, notify = string.match(v, '^(%d+);(%a);(%w+);(%w+);%w+;[^;]*;(.*)$')
if b ~= ARGV[2] then return 0 end
if s ~= 'a' then
  a = ARGV[3]
  redis.call('HINCRBY', KEYS[2], 'active', 1)
  redis.call('HINCRBY', KEYS[2], 'activations', 1)
end
redis.call('HSET', KEYS[1], ARGV[1], b .. ';a;' .. r .. ';' .. a .. ';' .. ARGV[3] .. ';' .. ARGV[4] .. ';' .. notify)
return 1
