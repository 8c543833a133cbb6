-- Puts a failed batch back to work: queues steps for the rows without a
-- result. ARGV: seq, step size, now. Returns the rows queued, or -1 when the
-- batch does not exist, -2 when it is not failed, -3 when its rows were
-- removed (batch retention). KEYS: the batch, its results, the step queue
-- the batch counters.
local seq, step = ARGV[1], tonumber(ARGV[2])
local bkey = KEYS[1]
local b = redis.call('HMGET', bkey, 'status', 'total', 'pruned')
if not b[1] then return -1 end
if b[3] then return -3 end
if b[1] ~= 'failed' then return -2 end
local total = tonumber(b[2])
local done = redis.call('GET', KEYS[2]) or ''
local queued, run_start, run_len = 0, nil, 0
local function flush()
  if run_start then
    redis.call('XADD', KEYS[3], '*', 'b', seq, 's', run_start, 'n', run_len)
    queued = queued + run_len
  end
  run_start, run_len = nil, 0
end
for idx = 0, total - 1 do
  local c = string.byte(done, idx + 1)
  if c == nil or c == 0 then
    if not run_start then run_start = idx end
    run_len = run_len + 1
    if run_len == step then flush() end
  else
    flush()
  end
end
flush()
for _, f in ipairs(redis.call('HKEYS', bkey)) do
  if string.sub(f, 1, 9) == 'attempts:' then redis.call('HDEL', bkey, f) end
end
redis.call('HSET', bkey, 'status', 'running', 'ut', ARGV[3])
redis.call('HDEL', bkey, 'error')
redis.call('HINCRBY', KEYS[4], 'failed', -1)
redis.call('HINCRBY', KEYS[4], 'running', 1)
return queued
