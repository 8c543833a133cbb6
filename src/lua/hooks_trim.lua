-- The events every push subscription has had leave the stream (hooks.h).
-- Atomic, so that a subscription made meanwhile loses nothing: with no
-- consumer group, nothing waits for any event; else the stream keeps, of
-- each group, its oldest event read but not acknowledged, or else what it
-- has not read yet (XTRIM MINID drops what is older).
-- KEYS[1]: the events stream. Returns the entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0) end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local best_ms, best_seq
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  local keep = last
  local p = redis.call('XPENDING', KEYS[1], name)
  if p[1] > 0 then keep = p[2] end
  local ms, seq = parse(keep)
  if not ms then return 0 end
  if not best_ms or ms < best_ms or (ms == best_ms and seq < best_seq) then best_ms, best_seq = ms, seq end
end
return redis.call('XTRIM', KEYS[1], 'MINID', best_ms .. '-' .. best_seq)
