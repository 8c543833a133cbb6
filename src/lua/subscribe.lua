-- A push subscription made (ARGV[1] 'add') or removed ('del') (SPEC §5).
-- KEYS[1]: the subscriptions, KEYS[2]: the events stream, KEYS[3]: the
-- subscription's state. ARGV: 'add' or 'del', its id, and for 'add' its
-- record ("url US events US sealed secret US createdAt") and now.
-- Its consumer group "s{id}" starts at the events queued from now on.
-- Returns 1, or 0 for 'del' of no such subscription.
local op, id = ARGV[1], ARGV[2]
if op == 'add' then
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('HSET', KEYS[3], 'state', 'active', 'createdAt', ARGV[4], 'delivered', 0)
  local ok = redis.pcall('XGROUP', 'CREATE', KEYS[2], 's' .. id, '$', 'MKSTREAM')
  if type(ok) == 'table' and ok.err and not string.find(ok.err, 'BUSYGROUP') then return ok end
  return 1
end
if redis.call('HDEL', KEYS[1], id) == 0 then return 0 end
redis.call('DEL', KEYS[3])
redis.pcall('XGROUP', 'DESTROY', KEYS[2], 's' .. id)
return 1
