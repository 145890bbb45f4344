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

-- Drops one hold: its amount leaves `held`; an in-flight one also leaves `inflight`
-- and, if it was the partial one, frees that place.
local function drop_hold(bal, holds, lease, id)
  local h = redis.call('HGET', holds, id)
  redis.call('ZREM', lease, id)
  if not h then return end
  redis.call('HDEL', holds, id)
  redis.call('HINCRBY', bal, 'held', negate(string.sub(h, 3)))
  if string.sub(h, 1, 1) == 'r' then
    redis.call('HINCRBY', bal, 'inflight', -1)
    if redis.call('HGET', bal, 'partial') == id then
      redis.call('HSET', bal, 'partial', '')
    end
  end
end

local function drop_lapsed(bal, holds, lease, now)
  local ids = redis.call('ZRANGEBYSCORE', lease, '-inf', now)
  for _, id in ipairs(ids) do drop_hold(bal, holds, lease, id) end
end
