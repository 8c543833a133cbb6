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
local d = redis.call('HGET', dkey, ARGV[7])
local seq, idx, rest = string.match(d or '', '^(%d+);(%d+);pending(.*)$')
if seq == ARGV[4] and idx == ARGV[5] then
  redis.call('HSET', dkey, ARGV[7], seq .. ';' .. idx .. ';sent' .. rest)
end
return 1
