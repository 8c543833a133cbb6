-- Creates or updates a product. KEYS[1]: its hash, KEYS[2]: the set of
-- products. ARGV: home region, home instance, account, locked (1/0),
-- bootstrap auth, now, product key, dynamic registration (off,
-- preregistered, open), pre-auth (1/0), and a sealed product secret to keep
-- when dynamic registration is on and the product has none yet (SPEC §9).
-- Returns {1 when the product is new else 0, 1 when that secret was kept
-- else 0}.
local created = redis.call('HSETNX', KEYS[1], 'ct', ARGV[6])
redis.call('HSET', KEYS[1], 'hr', ARGV[1], 'hi', ARGV[2], 'ac', ARGV[3], 'lk', ARGV[4], 'ba', ARGV[5],
  'ut', ARGV[6], 'dr', ARGV[8], 'pa', ARGV[9])
redis.call('SADD', KEYS[2], ARGV[7])
local issued = 0
if ARGV[8] ~= 'off' and redis.call('HSETNX', KEYS[1], 'ps', ARGV[10]) == 1 then issued = 1 end
return { created, issued }
