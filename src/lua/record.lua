-- The last part of a batch step: records each row's result once, with the
-- batch's counts and status, so that every row is counted exactly once
-- however often its step runs (docs/batches.md, "A step in parts").
-- Results and notify states are strings of a byte a row (docs/key-schema.md):
-- a zero byte (or past the end) is "none yet".
-- KEYS: the batch, its results, its notify states, the batch counters, its
-- failures (the code and message of each failed row).
-- ARGV: now, then per row: index, result ('s', or 'f' US code US message),
-- notify state ('' for none). Returns {succeeded, failed, notifies pending}
-- of the rows this call recorded, the indexes of the rows it recorded as
-- succeeded, and {total, succeeded, failed} when this call completed the
-- batch, else {} (push subscriptions' events).
local bkey, rkey, nkey, fkey = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
local STATE = { pending = 'p', sent = 's', acked = 'a', none = 'n' }
local function unset(k, idx)
  local c = redis.call('GETRANGE', KEYS[k], idx, idx)
  return c == '' or c == '\0'
end
local b = redis.call('HMGET', bkey, 'status', 'total')
if not b[1] then
  return redis.error_reply('batch ' .. bkey .. ' does not exist')
end
local ok, bad, pending = 0, 0, 0
local ok_rows, completed = {}, {}
for i = 2, #ARGV, 3 do
  local idx, result, state = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  if unset(2, idx) then
    redis.call('HINCRBY', bkey, 'processed', 1)
    if result == 's' then
      ok = ok + 1
      ok_rows[#ok_rows + 1] = idx
      redis.call('SETRANGE', rkey, idx, 's')
      redis.call('HINCRBY', bkey, 'succeeded', 1)
    else
      bad = bad + 1
      redis.call('SETRANGE', rkey, idx, 'f')
      redis.call('HSET', fkey, idx, string.sub(result, 3))
      redis.call('HINCRBY', bkey, 'failed', 1)
    end
    -- Not over a later state: the broker or the device may have answered
    -- before this part ran.
    if STATE[state] and unset(3, idx) then
      redis.call('SETRANGE', nkey, idx, STATE[state])
      if state == 'pending' then pending = pending + 1 end
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
    if new == 'completed' then
      local c = redis.call('HMGET', bkey, 'total', 'succeeded', 'failed')
      completed = { tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0 }
    end
  end
end
redis.call('HSET', bkey, 'ut', ARGV[1])
return { ok, bad, pending, ok_rows, completed }
