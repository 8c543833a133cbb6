-- A push subscription's backlog (GET /v1/subscriptions/{id}): its events
-- read but not yet answered, and those not read yet (counted here: Redis'
-- own "lag" is unknown once events were trimmed), at most 100000 of those.
-- KEYS[1]: the events stream. ARGV[1]: the group ("s{id}").
-- Returns {pending, unread}, or {} when the group is missing.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, pending, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'pending' then pending = g[i + 1]
    elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == ARGV[1] then
    return { pending, #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 100000) }
  end
end
return {}
