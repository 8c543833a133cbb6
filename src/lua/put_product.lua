-- Creates or updates a product. KEYS[1]: its hash, KEYS[2]: the set of
-- products. ARGV: home region, home
-- instance, account, locked (1/0), bootstrap auth, now, product key.
-- Returns 1 when the product is new, else 0.
local created = redis.call('HSETNX', KEYS[1], 'ct', ARGV[6])
redis.call('HSET', KEYS[1], 'hr', ARGV[1], 'hi', ARGV[2], 'ac', ARGV[3], 'lk', ARGV[4], 'ba', ARGV[5],
  'ut', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[7])
return created
