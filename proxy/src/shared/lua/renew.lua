-- A node's requests still in flight: their holds live on.
-- KEYS: lease   ARGV: lapse at (ms from now), request ids...
local at = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', at, ARGV[i]) end
return 0
