-- A capped key's spend as the store has it (today, this month, in all), read by a node
-- the first time the fleet sees the key: kept only if no node loaded it first.
-- KEYS: bal   ARGV: key id, day, day start, month, month start, total
local bal, kp = KEYS[1], 'k:' .. ARGV[1] .. ':'
if redis.call('EXISTS', bal) == 0 or redis.call('HEXISTS', bal, kp .. 'tot') == 1 then
  return 0
end
redis.call('HSET', bal, kp .. 'day', ARGV[2], kp .. 'day0', ARGV[3], kp .. 'mon', ARGV[4],
  kp .. 'mon0', ARGV[5], kp .. 'tot', ARGV[6], kp .. 'held', 0, kp .. 'part', '')
return 1
