-- Admits one request: the key's rate limits over a sliding window, then the account's
-- concurrency cap, then a credit hold of the worst-case cost (or of what is left, for
-- one request at a time). Counts into the windows whether or not credit follows, as a
-- single node does.
-- KEYS: bal, holds, lease, requests window (ZSET id -> ms), tokens window (ZSET id -> ms),
--       token counts (HASH id -> tokens, `_sum`)
-- ARGV: request id, worst case, max in flight, rpm (0: none), tpm (0: none),
--       estimated tokens, lease ms, window ms, idle ms (every key expires when idle),
--       key id, daily, monthly, total spend cap (0: none), this UTC day's and month's
--       start (ms)
-- Returns {outcome, detail, requests in window, ms until it clears, tokens in window,
-- ms until it clears}; outcome: ok (detail: amount held, then 1 if partial), load (no
-- balance here yet), load_spend (no spend of this key here yet), rpm / tpm (detail:
-- retry after ms), concurrency, insufficient (detail: available), spend (detail: day,
-- month or total: the cap reached).
local bal, holds, lease, rq, tk, tn = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, worst = ARGV[1], ARGV[2]
local max_in_flight, rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local estimate, lease_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local window, idle = tonumber(ARGV[8]), tonumber(ARGV[9])
local key_id = ARGV[10]
local caps = {day = tonumber(ARGV[11]), month = tonumber(ARGV[12]), total = tonumber(ARGV[13])}
local day0, mon0 = ARGV[14], ARGV[15]
local capped = caps.day > 0 or caps.month > 0 or caps.total > 0
local kp = 'k:' .. key_id .. ':'

if redis.call('EXISTS', bal) == 0 then return {'load'} end
if capped and redis.call('HEXISTS', bal, kp .. 'tot') == 0 then return {'load_spend'} end
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

-- Admitted already: this is a retry of a call whose answer was lost (the node's
-- connection timed out after Redis ran it). Counting it again would leak a hold that
-- nothing releases (under-admitting until its lease lapses).
local existing = redis.call('HGET', holds, id)
if existing then
  local state, amount = parse_hold(existing)
  if state == 'r' then
    local partial = 0
    if redis.call('HGET', bal, 'partial') == id or redis.call('HGET', bal, kp .. 'part') == id then
      partial = 1
    end
    window_state()
    return {'ok', amount .. ':' .. partial, requests, requests_clear, tokens, tokens_clear}
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
-- Counted: the newest entry of each window is this one, which clears in a window.
if rpm > 0 then
  redis.call('ZADD', rq, now, id)
  redis.call('PEXPIRE', rq, window)
  requests, requests_clear = redis.call('ZCARD', rq), window
end
if tpm > 0 then
  redis.call('ZADD', tk, now, id)
  redis.call('HSET', tn, id, estimate)
  tokens, tokens_clear = redis.call('HINCRBY', tn, '_sum', estimate), window
  redis.call('PEXPIRE', tk, window)
  redis.call('PEXPIRE', tn, window)
end

local b = redis.call('HMGET', bal, 'ledger', 'held', 'inflight', 'partial')
if tonumber(b[3]) >= max_in_flight then
  return {'concurrency', max_in_flight, requests, requests_clear, tokens, tokens_clear}
end
local available = tonumber(b[1]) - tonumber(b[2])
if available <= 0 then
  return {'insufficient', string.format('%.0f', available), requests, requests_clear, tokens,
    tokens_clear}
end
-- The key's spend caps: what the tightest still allows after its requests in flight.
local key_left, key_cap = nil, nil
if capped then
  roll_spend(bal, kp, day0, mon0)
  local k = redis.call('HMGET', bal, kp .. 'day', kp .. 'mon', kp .. 'tot', kp .. 'held', kp .. 'part')
  local spent = {day = tonumber(k[1]), month = tonumber(k[2]), total = tonumber(k[3])}
  for _, which in ipairs({'day', 'month', 'total'}) do
    if caps[which] > 0 then
      local left = caps[which] - spent[which] - tonumber(k[4])
      if key_left == nil or left < key_left then key_left, key_cap = left, which end
    end
  end
  if key_left <= 0 then
    return {'spend', key_cap, requests, requests_clear, tokens, tokens_clear}
  end
  if key_left < tonumber(worst) and k[5] ~= '' and key_left < available then
    return {'spend', key_cap, requests, requests_clear, tokens, tokens_clear}
  end
end
local limit, partial = available, 0
if key_left ~= nil and key_left < limit then limit = key_left end
local amount = worst
if limit < tonumber(worst) then
  local key_binds = key_left ~= nil and key_left < available
  if (not key_binds and b[4] ~= '') then
    return {'insufficient', string.format('%.0f', available), requests, requests_clear,
      tokens, tokens_clear}
  end
  amount, partial = string.format('%.0f', limit), 1
  if key_binds then
    redis.call('HSET', bal, kp .. 'part', id)
  else
    redis.call('HSET', bal, 'partial', id)
  end
end
redis.call('HINCRBY', bal, 'held', amount)
redis.call('HINCRBY', bal, 'inflight', 1)
local tag = ''
if capped then
  redis.call('HINCRBY', bal, kp .. 'held', amount)
  tag = ':' .. key_id
end
redis.call('HSET', holds, id, 'r:' .. amount .. tag)
redis.call('ZADD', lease, now + lease_ms, id)
for _, k in ipairs({bal, holds, lease}) do redis.call('PEXPIRE', k, idle) end
return {'ok', amount .. ':' .. partial, requests, requests_clear, tokens, tokens_clear}
