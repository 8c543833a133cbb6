-- The counters behind GET /v1/stats: {bd:stats, bd:stats:region, bd:stats:batches}.
return { redis.call('HGETALL', 'bd:stats'), redis.call('HGETALL', 'bd:stats:region'),
  redis.call('HGETALL', 'bd:stats:batches') }
