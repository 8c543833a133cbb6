-- Applies one step of a batch: rows START .. START+COUNT-1 of batch SEQ.
-- ARGV: seq, start, count, now, then pairs of instance id and the key of its
-- notify broker (from the worker's catalog; an instance without a broker is
-- not listed). Atomic; applying a step twice changes nothing
-- (a row that has a result is skipped). Returns {succeeded, failed} of the
-- rows this call recorded.
local seq, start, count, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local brokers = {}
for i = 5, #ARGV - 1, 2 do brokers[ARGV[i]] = ARGV[i + 1] end
local bkey = 'bd:b:' .. seq
local rkey = bkey .. ':r'
local b = redis.call('HMGET', bkey, 'st', 'tg', 'ac', 'kd', 'status', 'total')
if not b[1] then
  return redis.error_reply('batch ' .. seq .. ' does not exist')
end
local US = '\31'
local target_region, target_instance = string.match(b[2], '^([^/,]+)/([^,]+)')
local account = b[3]
local cross = account ~= ''
local products_only = b[4] == 'p'
local ok, bad = 0, 0

-- The first target of a batch, cached for this call.
local targets = {}
local function batch_target(n)
  if targets[n] == nil then
    local tg = redis.call('HGET', 'bd:b:' .. n, 'tg') or ''
    local r, i = string.match(tg, '^([^/,]+)/([^,]+)')
    targets[n] = { r or '', i or '' }
  end
  return targets[n][1], targets[n][2]
end

-- A row's result and its counts are written together: should a later
-- command of this step fail (Redis does not undo a script's earlier writes),
-- what was recorded stays counted.
-- The instance a device was in under assignment N (0: the product's home
-- instance HOME); for a nearest batch, the candidate of the region it last
-- bootstrapped in, else the first.
local function instance_under(n, last_region, home)
  if n == 0 then return home end
  local b = redis.call('HMGET', 'bd:b:' .. n, 'st', 'tg')
  local first
  for r, i in string.gmatch(b[2] or '', '([^/,]+)/([^,]+)') do
    first = first or i
    if b[1] == 'nearest' and r == last_region then return i end
  end
  return first or home
end

-- Queues the bootstrap notify for a distributed device on the outbox of the
-- broker through which it is reachable now (SPEC §7).
local queued = 0
local function queue_notify(idx, pk, dn, bucket, from_instance)
  local broker = from_instance and brokers[from_instance]
  if not broker then
    redis.call('HSET', bkey .. ':n', idx, 'none')
    redis.call('HSET', 'bd:nd:' .. bucket, pk .. '/' .. dn, seq .. ';' .. idx .. ';none;' .. (from_instance or ''))
    return
  end
  redis.call('XADD', 'bd:n:q:' .. broker, '*', 'b', seq, 'i', idx, 'p', pk, 'd', dn)
  redis.call('HSET', bkey .. ':n', idx, 'pending')
  redis.call('HSET', 'bd:nd:' .. bucket, pk .. '/' .. dn, seq .. ';' .. idx .. ';pending;' .. from_instance)
  queued = queued + 1
end

local function record(idx, code, message)
  local value = 's'
  if code then value = 'f' .. US .. code .. US .. message end
  if redis.call('HSETNX', rkey, idx, value) == 1 then
    redis.call('HINCRBY', bkey, 'processed', 1)
    if code then
      bad = bad + 1
      redis.call('HINCRBY', bkey, 'failed', 1)
    else
      ok = ok + 1
      redis.call('HINCRBY', bkey, 'succeeded', 1)
    end
  end
end

local function apply_product(idx, pk)
  local pkey = 'bd:p:' .. pk
  local p = redis.call('HMGET', pkey, 'hr', 'lk', 'pb')
  if not p[1] then return record(idx, 'product_not_found', 'no such product') end
  if p[2] == '1' then return record(idx, 'product_locked', 'the product is locked') end
  local current = tonumber(p[3] or '0') or 0
  if current > seq then
    return record(idx, 'superseded', 'batch ' .. current .. ', created later, assigned this product')
  end
  redis.call('HSET', pkey, 'pb', seq)
  return record(idx)
end

local function apply_device(idx, pk, dn, bucket)
  local p = redis.call('HMGET', 'bd:p:' .. pk, 'hr', 'hi', 'lk', 'pb')
  if not p[1] then return record(idx, 'product_not_found', 'no such product') end
  if p[3] == '1' then return record(idx, 'product_locked', 'the product is locked') end
  local dkey = 'bd:d:' .. bucket
  local field = pk .. '/' .. dn
  local rec = redis.call('HGET', dkey, field)
  if not rec then return record(idx, 'device_not_found', 'the device is not registered') end
  local cb, st, reg, act, last, lreg = string.match(rec, '^(%d+);(%a);(%-?%d+);(%-?%d+);(%-?%d+);(.*)$')
  if not cb then return record(idx, 'internal_error', 'the stored device record is unreadable') end
  cb = tonumber(cb)
  if cb > seq then
    return record(idx, 'superseded', 'batch ' .. cb .. ', created later, assigned this device')
  end
  if cross then
    local from = cb
    if from == 0 then from = tonumber(p[4] or '0') or 0 end
    local cur_r, cur_i = p[1], p[2]
    if from > 0 then cur_r, cur_i = batch_target(from) end
    if cur_r == target_region and cur_i == target_instance then
      return record(idx, 'same_instance', 'the device is already in ' .. cur_r .. '/' .. cur_i)
    end
  end
  if cb ~= seq then
    if cb > 0 then
      local old_r = batch_target(cb)
      if old_r ~= '' then redis.call('HINCRBY', 'bd:stats:region', old_r, -1) end
    end
    redis.call('HINCRBY', 'bd:stats:region', target_region, 1)
    if st == 'a' then redis.call('HINCRBY', 'bd:stats', 'active', -1) end
    redis.call('HSET', dkey, field, seq .. ';i;' .. reg .. ';' .. act .. ';' .. last .. ';' .. lreg)
    local from = cb
    if from == 0 then from = tonumber(p[4] or '0') or 0 end
    -- Moved before and not bootstrapped since: it is still where the last
    -- notify found it.
    local last = redis.call('HGET', 'bd:nd:' .. bucket, field)
    local last_instance = last and string.match(last, '^%d+;%d+;%a+;(.+)$')
    if st == 'i' and cb > 0 and last_instance then
      queue_notify(idx, pk, dn, bucket, last_instance)
    else
      queue_notify(idx, pk, dn, bucket, instance_under(from, lreg, p[2]))
    end
  end
  return record(idx)
end

local items = redis.call('LRANGE', bkey .. ':i', start, start + count - 1)
for i, item in ipairs(items) do
  local idx = start + i - 1
  if redis.call('HEXISTS', rkey, idx) == 0 then
    local tag = string.sub(item, 1, 1)
    local rest = string.sub(item, 2)
    local pk, dn, bucket = string.match(rest, '^([^\31]*)\31([^\31]*)\31(%x*)$')
    if not pk then pk = rest end
    if tag == 'D' then
      record(idx, 'duplicate_row', 'the same device is in an earlier row')
    elseif tag == 'N' then
      record(idx, 'invalid_device_name', 'not a valid productKey and deviceName')
    elseif products_only then
      apply_product(idx, pk)
    else
      apply_device(idx, pk, dn, bucket)
    end
  end
end

-- A failed batch stays failed until it is retried.
local status = b[5]
if status ~= 'failed' then
  local processed = tonumber(redis.call('HGET', bkey, 'processed'))
  local new = 'running'
  if processed >= tonumber(b[6]) then new = 'completed' end
  if new ~= status then
    redis.call('HSET', bkey, 'status', new)
    redis.call('HINCRBY', 'bd:stats:batches', status, -1)
    redis.call('HINCRBY', 'bd:stats:batches', new, 1)
  end
end
redis.call('HSET', bkey, 'ut', now)
return { ok, bad, queued }
