-- The data layout this store holds (docs/key-schema.md, "Layout version"):
-- a store without one is taken for this layout, written here, so that a
-- binary of another layout later finds it and refuses to serve.
-- KEYS[1]: the schema hash. ARGV[1]: this binary's layout version.
-- Returns the store's version.
local v = redis.call('HGET', KEYS[1], 'version')
if not v then
  redis.call('HSET', KEYS[1], 'version', ARGV[1])
  return ARGV[1]
end
return v
