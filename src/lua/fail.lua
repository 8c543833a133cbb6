#!lua flags=allow-oom
-- Counts a failed attempt at a step; the third marks the batch failed.
-- allow-oom: a batch whose steps Redis refuses at maxmemory must still be
-- marked failed (a few bytes over the limit), or nobody learns why it stopped.
-- KEYS[1]: the batch, KEYS[2]: the batch counters.
-- ARGV: seq, start, reason, now, max attempts. Returns 1 when the batch is
-- now failed (the step is then dropped), else 0 (the step is tried again).
local bkey = KEYS[1]
local attempts = redis.call('HINCRBY', bkey, 'attempts:' .. ARGV[2], 1)
if attempts < tonumber(ARGV[5]) then return 0 end
local status = redis.call('HGET', bkey, 'status')
if status and status ~= 'failed' and status ~= 'completed' then
  redis.call('HSET', bkey, 'status', 'failed', 'error', ARGV[3], 'ut', ARGV[4])
  redis.call('HINCRBY', KEYS[2], status, -1)
  redis.call('HINCRBY', KEYS[2], 'failed', 1)
end
return 1
