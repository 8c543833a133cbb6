-- Stores a new batch and queues its steps, all or nothing. The batch's
-- number was taken before (INCR of bd:{b}:seq), so that every key is known
-- to the caller.
-- KEYS: the batch, its rows, the batch index, the step queue, the batch
-- counters; a sixth, for a cross-account batch, the auth code to use up.
-- ARGV: seq, strategy, targets, account, kind, now, step size, rows...
-- Returns the seq, or -1 when the auth code is not there.
if #KEYS == 6 and redis.call('GETDEL', KEYS[6]) == false then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('batch ' .. ARGV[1] .. ' exists already')
end
local seq = ARGV[1]
local n = #ARGV - 7
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'tg', ARGV[3], 'ac', ARGV[4], 'kd', ARGV[5],
  'ct', ARGV[6], 'ut', ARGV[6], 'status', 'initializing', 'total', n,
  'processed', 0, 'succeeded', 0, 'failed', 0)
for i = 8, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('ZADD', KEYS[3], seq, seq)
redis.call('HINCRBY', KEYS[5], 'initializing', 1)
local step = tonumber(ARGV[7])
for s = 0, n - 1, step do
  redis.call('XADD', KEYS[4], '*', 'b', seq, 's', s, 'n', math.min(step, n - s))
end
return tonumber(seq)
