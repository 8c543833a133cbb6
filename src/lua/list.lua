-- A page of batches, newest first. ARGV: cursor ('' = from the newest; else
-- only batches older than it), limit. Returns {seq, {hash fields...}, ...}
-- with one batch more than LIMIT when there is a next page.
local max = '+inf'
if ARGV[1] ~= '' then max = '(' .. ARGV[1] end
local seqs = redis.call('ZREVRANGEBYSCORE', 'bd:batches', max, '-inf', 'LIMIT', 0, tonumber(ARGV[2]) + 1)
local out = {}
for _, seq in ipairs(seqs) do
  out[#out + 1] = seq
  out[#out + 1] = redis.call('HGETALL', 'bd:b:' .. seq)
end
return out
