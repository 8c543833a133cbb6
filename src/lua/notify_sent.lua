-- A notify message was acknowledged by its broker (PUBACK): the device's
-- notify, in its record, is marked sent, unless the device already answered
-- or a later batch moved it since. (The outbox entry and the batch's notify
-- state are in other slots: the notifier updates them with their own
-- commands.)
-- KEYS[1]: the device's record bucket. ARGV: batch, row, device field.
-- Returns 1 when marked.
local d = redis.call('HGET', KEYS[1], ARGV[3])
local head, row, rest = string.match(d or '', '^(%d+;[^:]*;)(%d+):p(:.*)$')
if head and string.match(head, '^(%d+);') == ARGV[1] and row == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[3], head .. row .. ':s' .. rest)
  return 1
end
return 0
