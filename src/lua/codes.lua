-- The short codes of region and instance ids in device records
-- (docs/key-schema.md, "Codes"): each field of ARGV ("r:<region>" or
-- "i:<instance>") without a code gets the next one, a base-36 number from
-- the counter field '#', never given twice. Returns the whole table.
-- KEYS[1]: the codes hash.
local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
local function base36(n)
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(DIGITS, d + 1, d + 1) .. s
    n = math.floor(n / 36)
  until n == 0
  return s
end
for _, f in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[1], f) == 0 then
    redis.call('HSET', KEYS[1], f, base36(redis.call('HINCRBY', KEYS[1], '#', 1)))
  end
end
return redis.call('HGETALL', KEYS[1])
