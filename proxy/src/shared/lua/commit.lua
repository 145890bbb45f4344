-- The store has these requests' charges: their holds go, and the balance becomes the
-- store's — unless a later version is already here (it includes these charges too).
-- KEYS: bal, holds, lease   ARGV: balance, version, request ids...
local bal, holds, lease = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', bal) == 0 then return 0 end
for i = 3, #ARGV do
  local h = redis.call('HGET', holds, ARGV[i])
  if h and string.sub(h, 1, 1) == 's' then drop_hold(bal, holds, lease, ARGV[i]) end
end
if tonumber(ARGV[2]) > tonumber(redis.call('HGET', bal, 'ver')) then
  redis.call('HSET', bal, 'ledger', ARGV[1], 'ver', ARGV[2])
end
return 1
