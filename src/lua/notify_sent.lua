-- A notify message was acknowledged by its broker (PUBACK): drop it from the
-- outbox and mark it sent, unless the device already answered.
-- KEYS: the outbox stream, the batch's notify states, the device bucket's
-- latest notifies. ARGV: group, entry id, batch, row, device field.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local nkey = KEYS[2]
if redis.call('HGET', nkey, ARGV[4]) == 'pending' then
  redis.call('HSET', nkey, ARGV[4], 'sent')
end
local dkey = KEYS[3]
local d = redis.call('HGET', dkey, ARGV[5])
local seq, idx, rest = string.match(d or '', '^(%d+);(%d+);pending(.*)$')
if seq == ARGV[3] and idx == ARGV[4] then
  redis.call('HSET', dkey, ARGV[5], seq .. ';' .. idx .. ';sent' .. rest)
end
return 1
