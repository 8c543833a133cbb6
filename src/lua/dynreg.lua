-- A dynamic registration (SPEC §9): the device gets a new secret, signed
-- for with its product's secret (checked before). KEYS[1]: the device's
-- record bucket, KEYS[2]: its secret bucket, KEYS[3]: its group's counters,
-- KEYS[4]: the request's random (docs/key-schema.md).
-- ARGV: field, the product's mode ('open' or 'preregistered'), the record
-- of a device new now, the sealed secret, the random's lifetime (s).
-- Returns 'ok' (a device new now: 'new'), 'active' (it bootstrapped
-- before: its secret is not given again), 'replay' (the random was seen
-- within its lifetime), 'not_found' (preregistered, and it is not) or
-- 'unreadable' (the stored record).
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if rec then
  -- The record (docs/key-schema.md): batch;status;registered;activated;...
  local act = string.match(rec, '^%d+;%a;%w+;(%w+);')
  if not act then return 'unreadable' end
  if act ~= '0' then return 'active' end
elseif ARGV[2] ~= 'open' then
  return 'not_found'
end
if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[5])) then return 'replay' end
local result = 'ok'
if not rec then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'devices', 1)
  result = 'new'
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return result
