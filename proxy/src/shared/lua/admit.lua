-- Admits one request: the key's rate limits over a sliding window, then the account's
-- concurrency cap, then a credit hold of the worst-case cost (or of what is left, for
-- one request at a time). Counts into the windows whether or not credit follows, as a
-- single node does.
-- KEYS: bal, holds, lease, requests window (ZSET id -> ms), tokens window (ZSET id -> ms),
--       token counts (HASH id -> tokens, `_sum`)
-- ARGV: request id, worst case, max in flight, rpm (0: none), tpm (0: none),
--       estimated tokens, lease ms, window ms, idle ms (every key expires when idle)
-- Returns {outcome, detail, requests in window, ms until it clears, tokens in window,
-- ms until it clears}; outcome: ok (detail: amount held, then 1 if partial), load (no
-- balance here yet), rpm / tpm (detail: retry after ms), concurrency, insufficient
-- (detail: available).
local bal, holds, lease, rq, tk, tn = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, worst = ARGV[1], ARGV[2]
local max_in_flight, rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local estimate, lease_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local window, idle = tonumber(ARGV[8]), tonumber(ARGV[9])

if redis.call('EXISTS', bal) == 0 then return {'load'} end
local now = now_ms()
drop_lapsed(bal, holds, lease, now)

local requests, requests_clear, tokens, tokens_clear = 0, 0, 0, 0
local function window_state()
  if rpm > 0 then
    requests = redis.call('ZCARD', rq)
    local newest = redis.call('ZRANGE', rq, -1, -1, 'WITHSCORES')
    if newest[2] then requests_clear = math.max(0, tonumber(newest[2]) + window - now) end
  end
  if tpm > 0 then
    tokens = tonumber(redis.call('HGET', tn, '_sum') or '0')
    local newest = redis.call('ZRANGE', tk, -1, -1, 'WITHSCORES')
    if newest[2] then tokens_clear = math.max(0, tonumber(newest[2]) + window - now) end
  end
end

if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', rq, '-inf', now - window)
  if redis.call('ZCARD', rq) >= rpm then
    local oldest = redis.call('ZRANGE', rq, 0, 0, 'WITHSCORES')
    window_state()
    return {'rpm', math.max(0, tonumber(oldest[2]) + window - now), requests,
      requests_clear, tokens, tokens_clear}
  end
end
if tpm > 0 then
  local aged = redis.call('ZRANGEBYSCORE', tk, '-inf', now - window)
  for _, r in ipairs(aged) do
    local n = redis.call('HGET', tn, r)
    if n then
      redis.call('HINCRBY', tn, '_sum', -tonumber(n))
      redis.call('HDEL', tn, r)
    end
  end
  redis.call('ZREMRANGEBYSCORE', tk, '-inf', now - window)
  local sum = tonumber(redis.call('HGET', tn, '_sum') or '0')
  if sum + estimate > tpm then
    -- Wait until enough of the window's tokens have aged out.
    local entries = redis.call('ZRANGE', tk, 0, -1, 'WITHSCORES')
    local freed, retry = 0, window
    for i = 1, #entries, 2 do
      freed = freed + tonumber(redis.call('HGET', tn, entries[i]) or '0')
      if sum - freed + estimate <= tpm then
        retry = math.max(0, tonumber(entries[i + 1]) + window - now)
        break
      end
    end
    window_state()
    return {'tpm', retry, requests, requests_clear, tokens, tokens_clear}
  end
end
if rpm > 0 then
  redis.call('ZADD', rq, now, id)
  redis.call('PEXPIRE', rq, window)
end
if tpm > 0 then
  redis.call('ZADD', tk, now, id)
  redis.call('HSET', tn, id, estimate)
  redis.call('HINCRBY', tn, '_sum', estimate)
  redis.call('PEXPIRE', tk, window)
  redis.call('PEXPIRE', tn, window)
end
window_state()

local b = redis.call('HMGET', bal, 'ledger', 'held', 'inflight', 'partial')
if tonumber(b[3]) >= max_in_flight then
  return {'concurrency', max_in_flight, requests, requests_clear, tokens, tokens_clear}
end
local available = tonumber(b[1]) - tonumber(b[2])
if available <= 0 then
  return {'insufficient', string.format('%.0f', available), requests, requests_clear, tokens,
    tokens_clear}
end
local amount, partial = worst, 0
if available < tonumber(worst) then
  if b[4] ~= '' then
    return {'insufficient', string.format('%.0f', available), requests, requests_clear,
      tokens, tokens_clear}
  end
  amount, partial = string.format('%.0f', available), 1
  redis.call('HSET', bal, 'partial', id)
end
redis.call('HINCRBY', bal, 'held', amount)
redis.call('HINCRBY', bal, 'inflight', 1)
redis.call('HSET', holds, id, 'r:' .. amount)
redis.call('ZADD', lease, now + lease_ms, id)
for _, k in ipairs({bal, holds, lease}) do redis.call('PEXPIRE', k, idle) end
return {'ok', amount .. ':' .. partial, requests, requests_clear, tokens, tokens_clear}
