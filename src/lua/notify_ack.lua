-- A device answered a notify with code 200. ARGV: device bucket, device
-- field, and the id it answered when it is one of ours ('' otherwise: some
-- firmware answers with an id of its own, and a reply after the notify counts).
-- Returns 1 when the device's latest notify is now acknowledged, else 0.
local dkey = 'bd:nd:' .. ARGV[1]
local d = redis.call('HGET', dkey, ARGV[2])
if not d then return 0 end
local seq, idx, state, rest = string.match(d, '^(%d+);(%d+);(%a+)(.*)$')
if not seq then return 0 end
local ours = ARGV[3] ~= '' and string.len(ARGV[3]) > 6 and
  redis.call('HEXISTS', 'bd:b:' .. string.sub(ARGV[3], 1, -7) .. ':n', tonumber(string.sub(ARGV[3], -6))) == 1
if ours then
  -- One of our ids naming an older notify is a late answer to that one.
  if ARGV[3] ~= string.format('%s%06d', seq, tonumber(idx)) then return 0 end
elseif state == 'pending' then
  -- An id of the device's own counts only after the notify went out.
  return 0
end
if state ~= 'acked' then
  redis.call('HSET', dkey, ARGV[2], seq .. ';' .. idx .. ';acked' .. rest)
  redis.call('HSET', 'bd:b:' .. seq .. ':n', idx, 'acked')
end
return 1
