-- A notify message was acknowledged by its broker (PUBACK): the device's
-- latest notify is marked sent, unless the device already answered or a
-- later notify replaced it. (The outbox entry and the batch's notify state
-- are in other slots: the notifier updates them with their own commands.)
-- KEYS[1]: the device's notify bucket. ARGV: batch, row, device field.
-- Returns 1 when marked.
local d = redis.call('HGET', KEYS[1], ARGV[3])
local seq, idx, rest = string.match(d or '', '^(%d+);(%d+);pending(.*)$')
if seq == ARGV[1] and idx == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[3], seq .. ';' .. idx .. ';sent' .. rest)
  return 1
end
return 0
