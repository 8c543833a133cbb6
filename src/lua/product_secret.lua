-- A product's new secret (SPEC §9: POST /v1/products/{productKey}/secret).
-- KEYS[1]: the product's hash. ARGV: the sealed secret, now.
-- Returns 1, or 0 when there is no such product.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ps', ARGV[1], 'ut', ARGV[2])
return 1
