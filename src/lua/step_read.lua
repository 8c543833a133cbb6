-- The first part of a batch step (docs/batches.md, "A step in parts"): the
-- batch and the rows START .. START+COUNT-1 that have no result yet.
-- KEYS: the batch, its rows, its results (a byte a row). ARGV: start, count.
-- Returns {{st, tg, ac, kd, status, total}, {index, row, ...}}, or an error
-- when the batch does not exist.
local b = redis.call('HMGET', KEYS[1], 'st', 'tg', 'ac', 'kd', 'status', 'total')
if not b[1] then
  return redis.error_reply('batch ' .. KEYS[1] .. ' does not exist')
end
local start = tonumber(ARGV[1])
local items = redis.call('LRANGE', KEYS[2], start, start + tonumber(ARGV[2]) - 1)
local done = redis.call('GETRANGE', KEYS[3], start, start + tonumber(ARGV[2]) - 1)
local open = {}
for i, item in ipairs(items) do
  local idx = start + i - 1
  local c = string.byte(done, i)
  if c == nil or c == 0 then
    open[#open + 1] = idx
    open[#open + 1] = item
  end
end
for i = 1, 6 do b[i] = b[i] or '' end
return { b, open }
