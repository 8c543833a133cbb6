-- A batch row's notify state moves on: to 'sent' (its broker took it)
-- unless the device answered already, or to 'acked'. A state recorded
-- later never goes back (the step records 'pending' only where there is
-- none yet).
-- KEYS[1]: the batch's notify states. ARGV: row, new state.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == 'sent' and cur == 'acked' then return 0 end
if cur == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
