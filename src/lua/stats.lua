-- The counters behind GET /v1/stats. KEYS: bd:stats, bd:stats:region,
-- bd:stats:batches.
return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]) }
