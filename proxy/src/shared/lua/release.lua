-- A request ended before the provider produced anything: its hold goes, unused.
-- KEYS: bal, holds, lease   ARGV: request id
local h = redis.call('HGET', KEYS[2], ARGV[1])
if h and string.sub(h, 1, 1) == 'r' then drop_hold(KEYS[1], KEYS[2], KEYS[3], ARGV[1]) end
return 0
