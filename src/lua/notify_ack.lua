-- A device answered a notify with code 200.
-- KEYS[1]: the device's record bucket (the notify is the record's last
-- part, of the record's batch). ARGV: device field, the id it answered when
-- it is one of ours ('' otherwise: some firmware answers with an id of its
-- own, and a reply after the notify counts), and '1' when that id names a
-- row of a batch (the notifier looked in the batch's slot).
-- Returns "{seq};{row}" of the device's latest notify when it is now
-- acknowledged, else ''.
local d = redis.call('HGET', KEYS[1], ARGV[1])
if not d then return '' end
local head, seq, row, state, rest = string.match(d, '^((%d+);[^:]*;)(%d+):(%a)(:.*)$')
if not head then return '' end
if ARGV[3] == '1' then
  -- One of our ids naming an older notify is a late answer to that one.
  if ARGV[2] ~= string.format('%s%06d', seq, tonumber(row)) then return '' end
elseif state == 'p' then
  -- An id of the device's own counts only after the notify went out.
  return ''
end
if state ~= 'a' then
  redis.call('HSET', KEYS[1], ARGV[1], head .. row .. ':a' .. rest)
end
return seq .. ';' .. row
