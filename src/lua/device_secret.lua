-- A device's new secret (POST /v1/devices/{pk}/{dn}/secret): its pre-auth
-- token goes with the old one (SPEC §10: a token is for the secret that got
-- it). KEYS[1]: the device's record bucket, KEYS[2]: its secret bucket,
-- KEYS[3]: its pre-auth token (docs/key-schema.md).
-- ARGV: field, the sealed secret. Returns 1, or 0 when there is no such device.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
return 1
