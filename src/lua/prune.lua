#!lua flags=allow-oom
-- Batch retention: the rows, results and notify states of completed and
-- failed batches last updated before a cutoff are removed; the batch's hash
-- stays (devices' assignments point at it) with pruned = now.
-- KEYS[1]: the batch counters (their notify_unacked loses the removed
-- rows still 'sent'); then per batch five keys, its hash, rows, results,
-- notify states and failures.
-- ARGV: cutoff (unix seconds), now, then each batch's seq, oldest first.
-- Returns {batches pruned, the last seq of the leading run of batches that
-- need nothing more (pruned, or gone)}; 0 when the first still waits.
-- allow-oom: freeing memory must work when Redis is full.
local cutoff = tonumber(ARGV[1])
local pruned, settled_upto, settled = 0, 0, true
for i = 3, #ARGV do
  local k = (i - 3) * 5 + 2
  local b = redis.call('HMGET', KEYS[k], 'status', 'ut', 'pruned')
  local done = b[1] == false or b[3] ~= false
  if not done and (b[1] == 'completed' or b[1] == 'failed') and tonumber(b[2] or '0') < cutoff then
    local _, unacked = string.gsub(redis.call('GET', KEYS[k + 3]) or '', 's', '')
    if unacked > 0 then redis.call('HINCRBY', KEYS[1], 'notify_unacked', -unacked) end
    redis.call('DEL', KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4])
    redis.call('HSET', KEYS[k], 'pruned', ARGV[2])
    pruned = pruned + 1
    done = true
  end
  if settled and done then settled_upto = tonumber(ARGV[i]) else settled = false end
end
return { pruned, settled_upto }
