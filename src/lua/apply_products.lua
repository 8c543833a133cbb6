-- The product rows of a batch step: each product is assigned to batch SEQ,
-- unless it is missing, locked, or a batch created later has it. Applying
-- a row again changes nothing.
-- KEYS: the products (one hash tag). ARGV: seq.
-- Returns one result per product: 's', or 'f', US, code, US, message.
local seq = tonumber(ARGV[1])
local US = '\31'
local out = {}
for i, key in ipairs(KEYS) do
  local p = redis.call('HMGET', key, 'hr', 'lk', 'pb')
  local current = tonumber(p[3] or '0') or 0
  if not p[1] then
    out[i] = 'f' .. US .. 'product_not_found' .. US .. 'no such product'
  elseif p[2] == '1' then
    out[i] = 'f' .. US .. 'product_locked' .. US .. 'the product is locked'
  elseif current > seq then
    out[i] = 'f' .. US .. 'superseded' .. US .. 'batch ' .. current .. ', created later, assigned this product'
  else
    if current ~= seq then redis.call('HSET', key, 'pb', seq) end
    out[i] = 's'
  end
end
return out
