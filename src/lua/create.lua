-- Stores a new batch and queues its steps, all or nothing.
-- KEYS[1]: the auth code key to use up, or '' for none.
-- ARGV: strategy, targets, account, kind, now, step size, items...
-- Returns the batch's sequence number, or -1 when the auth code is not there.
if KEYS[1] ~= '' and redis.call('GETDEL', KEYS[1]) == false then
  return -1
end
local seq = redis.call('INCR', 'bd:seq:batch')
local bkey = 'bd:b:' .. seq
local n = #ARGV - 6
redis.call('HSET', bkey, 'st', ARGV[1], 'tg', ARGV[2], 'ac', ARGV[3], 'kd', ARGV[4],
  'ct', ARGV[5], 'ut', ARGV[5], 'status', 'initializing', 'total', n,
  'processed', 0, 'succeeded', 0, 'failed', 0)
for i = 7, #ARGV, 1000 do
  redis.call('RPUSH', bkey .. ':i', unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('ZADD', 'bd:batches', seq, seq)
redis.call('HINCRBY', 'bd:stats:batches', 'initializing', 1)
local step = tonumber(ARGV[6])
for s = 0, n - 1, step do
  redis.call('XADD', 'bd:q:batches', '*', 'b', seq, 's', s, 'n', math.min(step, n - s))
end
return seq
