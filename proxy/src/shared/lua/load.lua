-- The store's balance (and its version), read by a node: it starts the account's
-- shared state, or replaces an older balance. Never goes back to an older version.
-- KEYS: bal, holds, lease   ARGV: balance, version, idle ms
local bal = KEYS[1]
if redis.call('EXISTS', bal) == 0 then
  redis.call('HSET', bal, 'ledger', ARGV[1], 'ver', ARGV[2], 'held', 0, 'inflight', 0,
    'partial', '')
  -- Holds of a state Redis lost are gone with it; they must not count twice.
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('PEXPIRE', bal, tonumber(ARGV[3]))
  return 1
end
if tonumber(ARGV[2]) > tonumber(redis.call('HGET', bal, 'ver')) then
  redis.call('HSET', bal, 'ledger', ARGV[1], 'ver', ARGV[2])
  return 1
end
return 0
