-- A registration call's record (SPEC §5): GET /v1/products/{pk}/registrations
-- lists them, and /registrations/{id}.csv downloads the devices with their
-- secrets again. KEYS[1]: the product's records (hash: id -> "method;count;
-- createdAt;actor", and '#' the last id), KEYS[2]: their device names (hash:
-- id -> names, one a line), KEYS[3]: for dynamic registrations, the day's
-- list of names ('' otherwise).
-- ARGV: method ('csv', 'count' or 'dynamic'), count, now (unix), actor,
-- then for csv and count the names (one a line), for dynamic the record's
-- id (one a product a day) and the device's name.
-- Returns the record's id.
local method, count, now, actor = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if method == 'dynamic' then
  local id = ARGV[5]
  local cur = redis.call('HGET', KEYS[1], id)
  local n = cur and tonumber(string.match(cur, '^[^;]*;(%d+);')) or 0
  local ct = cur and string.match(cur, '^[^;]*;%d+;(%d+);') or now
  redis.call('HSET', KEYS[1], id, 'dynamic;' .. (n + 1) .. ';' .. ct .. ';' .. actor)
  redis.call('RPUSH', KEYS[3], ARGV[6])
  return id
end
local id = tostring(redis.call('HINCRBY', KEYS[1], '#', 1))
redis.call('HSET', KEYS[1], id, method .. ';' .. count .. ';' .. now .. ';' .. actor)
redis.call('HSET', KEYS[2], id, ARGV[5])
return id
