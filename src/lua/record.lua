-- The last part of a batch step: records each row's result once, with the
-- batch's counts and status, so that every row is counted exactly once
-- however often its step runs (docs/batches.md, "A step in parts").
-- KEYS: the batch, its results, its notify states, the batch counters.
-- ARGV: now, then per row: index, result ('s', or 'f' US code US message),
-- notify state ('' for none). Returns {succeeded, failed, notifies pending}
-- of the rows this call recorded.
local bkey, rkey, nkey = KEYS[1], KEYS[2], KEYS[3]
local b = redis.call('HMGET', bkey, 'status', 'total')
if not b[1] then
  return redis.error_reply('batch ' .. bkey .. ' does not exist')
end
local ok, bad, pending = 0, 0, 0
for i = 2, #ARGV, 3 do
  local idx, result, state = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', rkey, idx, result) == 1 then
    redis.call('HINCRBY', bkey, 'processed', 1)
    if result == 's' then
      ok = ok + 1
      redis.call('HINCRBY', bkey, 'succeeded', 1)
    else
      bad = bad + 1
      redis.call('HINCRBY', bkey, 'failed', 1)
    end
    -- Not over a later state: the broker or the device may have answered
    -- before this part ran.
    if state ~= '' and redis.call('HSETNX', nkey, idx, state) == 1 and state == 'pending' then
      pending = pending + 1
    end
  end
end
-- A failed batch stays failed until it is retried.
local status = b[1]
if status ~= 'failed' then
  local processed = tonumber(redis.call('HGET', bkey, 'processed'))
  local new = 'running'
  if processed >= tonumber(b[2]) then new = 'completed' end
  if new ~= status then
    redis.call('HSET', bkey, 'status', new)
    redis.call('HINCRBY', KEYS[4], status, -1)
    redis.call('HINCRBY', KEYS[4], new, 1)
  end
end
redis.call('HSET', bkey, 'ut', ARGV[1])
return { ok, bad, pending }
