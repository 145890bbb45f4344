-- Shared by every script (prepended to each). An account's state lives in keys that
-- share the hash tag {<account>}, so one script touches one Redis Cluster slot:
--   bal    HASH  ledger, ver (the store's balance and its version), held (credit held
--                by requests in flight and by charges not yet in the store), inflight,
--                partial (the one request allowed to hold less than its worst case)
--   holds  HASH  request id -> "r:<nanos>" (in flight) | "s:<nanos>" (settled)
--   lease  ZSET  request id -> when its hold lapses (ms); a dead node's holds lapse
-- Amounts stay strings on their way to HINCRBY, so they remain exact integers.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function negate(amount)
  if string.sub(amount, 1, 1) == '-' then return string.sub(amount, 2) end
  return '-' .. amount
end

-- A key with spend caps keeps, in `bal` too, fields `k:<key id>:<name>`: day, day0
-- (the UTC day they count), mon, mon0, tot (spent), held (its requests in flight
-- hold), part (its one request allowed to hold less than its worst case).

-- A hold's state (r or s), amount (a string) and key id (empty: the key has no caps).
local function parse_hold(h)
  return string.match(h, '^(%a):(%-?%d+):?(.*)$')
end

-- Drops one hold: its amount leaves `held`; an in-flight one also leaves `inflight`
-- and its key's `held`, and, if it was a partial one, frees that place.
local function drop_hold(bal, holds, lease, id)
  local h = redis.call('HGET', holds, id)
  redis.call('ZREM', lease, id)
  if not h then return end
  redis.call('HDEL', holds, id)
  local state, amount, key = parse_hold(h)
  redis.call('HINCRBY', bal, 'held', negate(amount))
  if state == 'r' then
    redis.call('HINCRBY', bal, 'inflight', -1)
    if redis.call('HGET', bal, 'partial') == id then
      redis.call('HSET', bal, 'partial', '')
    end
    if key ~= '' then
      local kp = 'k:' .. key .. ':'
      redis.call('HINCRBY', bal, kp .. 'held', negate(amount))
      if redis.call('HGET', bal, kp .. 'part') == id then
        redis.call('HSET', bal, kp .. 'part', '')
      end
    end
  end
end

-- Starts the key's day and month over when their period has passed.
local function roll_spend(bal, kp, day0, mon0)
  if redis.call('HGET', bal, kp .. 'day0') ~= day0 then
    redis.call('HSET', bal, kp .. 'day', 0, kp .. 'day0', day0)
  end
  if redis.call('HGET', bal, kp .. 'mon0') ~= mon0 then
    redis.call('HSET', bal, kp .. 'mon', 0, kp .. 'mon0', mon0)
  end
end

local function drop_lapsed(bal, holds, lease, now)
  local ids = redis.call('ZRANGEBYSCORE', lease, '-inf', now)
  for _, id in ipairs(ids) do drop_hold(bal, holds, lease, id) end
end
