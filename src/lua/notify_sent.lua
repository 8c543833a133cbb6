-- A notify message was acknowledged by its broker (PUBACK): drop it from the
-- outbox and mark it sent, unless the device already answered.
-- ARGV: stream, group, entry id, batch, row, device bucket, device field.
redis.call('XACK', ARGV[1], ARGV[2], ARGV[3])
redis.call('XDEL', ARGV[1], ARGV[3])
local nkey = 'bd:b:' .. ARGV[4] .. ':n'
if redis.call('HGET', nkey, ARGV[5]) == 'pending' then
  redis.call('HSET', nkey, ARGV[5], 'sent')
end
local dkey = 'bd:nd:' .. ARGV[6]
local mine = ARGV[4] .. ';' .. ARGV[5] .. ';'
if redis.call('HGET', dkey, ARGV[7]) == mine .. 'pending' then
  redis.call('HSET', dkey, ARGV[7], mine .. 'sent')
end
return 1
