-- A request finished: its in-flight hold becomes the real cost, held until the store
-- has the charge (commit.lua), and its token estimate becomes the real count.
-- A capped key's spend counts the cost now.
-- KEYS: bal, holds, lease, token counts (HASH)
-- ARGV: request id, cost, tokens used, settled lease ms, key id, this UTC day's and
--       month's start (ms)
local bal, holds, lease, tn = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, cost, used, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local kp = 'k:' .. ARGV[5] .. ':'

local counted = redis.call('HGET', tn, id)
if counted then
  redis.call('HSET', tn, id, used)
  redis.call('HINCRBY', tn, '_sum', used - tonumber(counted))
end
-- No balance here (Redis lost it): the charge reaches the balance through the store.
if redis.call('EXISTS', bal) == 0 then return 0 end
local h = redis.call('HGET', holds, id)
if h and string.sub(h, 1, 1) == 's' then return 0 end
if h then drop_hold(bal, holds, lease, id) end
if redis.call('HEXISTS', bal, kp .. 'tot') == 1 then
  roll_spend(bal, kp, ARGV[6], ARGV[7])
  for _, field in ipairs({'day', 'mon', 'tot'}) do
    redis.call('HINCRBY', bal, kp .. field, cost)
  end
end
if cost ~= '0' then
  redis.call('HSET', holds, id, 's:' .. cost)
  redis.call('HINCRBY', bal, 'held', cost)
  redis.call('ZADD', lease, now_ms() + lease_ms, id)
end
return 1
