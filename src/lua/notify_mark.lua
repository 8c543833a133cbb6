-- A batch row's notify state moves on: to 'sent' (its broker took it)
-- unless the device answered already, or to 'acked'. The states are a string
-- of a byte a row (docs/key-schema.md); a state recorded later never goes
-- back (the step records 'pending' only where there is none yet).
-- The batch counters' notify_unacked counts the rows 'sent' and not yet
-- 'acked', over every batch (bootstrapd_notify_unacked).
-- KEYS[1]: the batch's notify states, KEYS[2]: the batch counters.
-- ARGV: row, new state ('sent' or 'acked'). Returns 1 when it changed.
local idx = tonumber(ARGV[1])
local new = ARGV[2] == 'acked' and 'a' or 's'
local cur = redis.call('GETRANGE', KEYS[1], idx, idx)
if cur == new or (new == 's' and cur == 'a') then return 0 end
redis.call('SETRANGE', KEYS[1], idx, new)
if new == 's' then
  redis.call('HINCRBY', KEYS[2], 'notify_unacked', 1)
elseif cur == 's' then
  redis.call('HINCRBY', KEYS[2], 'notify_unacked', -1)
end
return 1
