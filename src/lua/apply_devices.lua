-- The device rows of a batch step that fall in one device group (one hash
-- tag): each device is assigned to batch SEQ, its group's counters follow,
-- and its notify is prepared (SPEC §7). The worker read each record before
-- and resolved what the script cannot read here (other batches' targets);
-- a record whose batch changed since is left for the step's next round.
-- Applying a row again changes nothing: a device already in SEQ only
-- reports what was done (docs/batches.md, "A step in parts").
-- KEYS per row: its record bucket and its group's counters. (In a Redis Cluster one call holds the rows of one group; on one
-- server, all the step's.)
-- Regions and instances are given as the codes a record holds them by
-- (docs/key-schema.md, "Codes"), but for the group's counters, which count
-- by region id.
-- ARGV: seq, target region code, target instance code, target region id,
-- cross-account ('1' or '0'), the number M of brokers, M pairs (instance
-- code, outbox key); then per row 8 values: index, field, the batch its
-- record had when read, the product's home region and home instance
-- codes, the strategy and targets ("r/i,...", codes) of the batch that
-- placed the device until now ('' '' for its product's home), and the id
-- of that batch's first region ('' for none).
-- Returns per row {index, result, notify state, outbox}: result 's', 'f'
-- US code US message, or 'r' (read again); notify state '' (none), 'none',
-- 'pending', 'sent' or 'acked'; the outbox key to queue the notify on when
-- it is pending, else ''.
local seq, target_region, target_instance, target_region_id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local cross = ARGV[5] == '1'
local brokers = {}
local m = tonumber(ARGV[6])
for i = 7, 6 + 2 * m, 2 do brokers[ARGV[i]] = ARGV[i + 1] end
-- A notify state as the record holds it (its first letter) and as it is answered.
local STATE = { p = 'pending', s = 'sent', a = 'acked', n = 'none' }
local US = '\31'
local out = {}

local function first_target(tg)
  return string.match(tg, '^([^/,]+)/([^,]+)')
end

-- The instance a device was in: for a nearest batch the candidate of the
-- region it last bootstrapped in, else the first; HOME without a batch.
local function instance_under(st, tg, last_region, home)
  local first
  for r, i in string.gmatch(tg, '([^/,]+)/([^,]+)') do
    first = first or i
    if st == 'nearest' and r == last_region then return i end
  end
  return first or home
end

local function fail(code, message)
  return 'f' .. US .. code .. US .. message
end

-- The record (docs/key-schema.md): batch;status;registered;activated;
-- lastBootstrap;lastRegion;notify, the times in base 36 (kept as they are),
-- the notify "row:s:instance" of the record's batch (s: the state's letter),
-- or empty.
local function apply(r, idx, field, seen, hr, hi, from_st, from_tg, from_rid)
  local dkey, counters = KEYS[1 + 2 * r], KEYS[2 + 2 * r]
  local rec = redis.call('HGET', dkey, field)
  if not rec then return fail('device_not_found', 'the device is not registered'), '', '' end
  local cb, st, reg, act, last, lreg, notify =
    string.match(rec, '^(%d+);(%a);(%w+);(%w+);(%w+);([^;]*);(.*)$')
  if not cb then return fail('internal_error', 'the stored device record is unreadable'), '', '' end
  if cb ~= seen then return 'r', '', '' end
  cb = tonumber(cb)
  if cb > seq then
    return fail('superseded', 'batch ' .. cb .. ', created later, assigned this device'), '', ''
  end
  local nrow, nstate, ninst = string.match(notify, '^(%d+):(%a):(.*)$')
  if cb == seq then
    -- Applied by an earlier round: report its notify as it stands.
    if tonumber(nrow) ~= idx or not STATE[nstate] then return 's', '', '' end
    return 's', STATE[nstate], nstate == 'p' and brokers[ninst] or ''
  end
  if cross then
    local cur_r, cur_i = hr, hi
    if from_tg ~= '' then cur_r, cur_i = first_target(from_tg) end
    if cur_r == target_region and cur_i == target_instance then
      return fail('same_instance', 'the device is already in ' .. cur_r .. '/' .. cur_i), '', ''
    end
  end
  if cb > 0 and from_rid ~= '' then redis.call('HINCRBY', counters, 'r:' .. from_rid, -1) end
  redis.call('HINCRBY', counters, 'r:' .. target_region_id, 1)
  if st == 'a' then redis.call('HINCRBY', counters, 'active', -1) end
  -- Moved before and not bootstrapped since: it is still where the last
  -- notify found it.
  local inst
  if st == 'i' and cb > 0 and ninst and ninst ~= '' then
    inst = ninst
  else
    inst = instance_under(from_st, from_tg, lreg, hi)
  end
  local broker = brokers[inst]
  local state = broker and 'p' or 'n'
  redis.call('HSET', dkey, field, seq .. ';i;' .. reg .. ';' .. act .. ';' .. last .. ';' .. lreg .. ';' ..
    idx .. ':' .. state .. ':' .. inst)
  return 's', STATE[state], broker or ''
end

local base = 6 + 2 * m
for r = 0, (#ARGV - base) / 8 - 1 do
  local a = base + 8 * r
  local idx = tonumber(ARGV[a + 1])
  local result, state, outbox = apply(r, idx, ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
  out[#out + 1] = { idx, result, state, outbox }
end
return out
