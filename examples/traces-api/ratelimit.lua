-- ratelimit.lua: traces-api's token bucket, run atomically in Redis (EVALSHA; EVAL on NOSCRIPT).
-- This file is the only copy: the build embeds it into the binary (CMakeLists.txt).
--
-- KEYS[1]  the bucket: a hash {tokens = float, ts = ms of the last update}
-- ARGV[1]  capacity: tokens a full bucket holds (= the per-minute limit)
-- ARGV[2]  refill rate in tokens per second (= limit / 60)
-- ARGV[3]  cost of this request in tokens (1)
-- Returns {allowed (1|0), remaining whole tokens, retry_after_ms (0 when allowed),
--          reset_ms (until the bucket is full again)}.
--
-- Time comes from the Redis server (TIME), not from the callers, so every traces-api
-- instance sharing this Redis agrees on it. A missing bucket is a full one, and the key
-- expires once it would have refilled anyway, so idle clients cost no memory.
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
-- Refill for the time since the last update; a clock that went back adds nothing.
if now > ts then
  tokens = tokens + (now - ts) * rate / 1000
  ts = now
end
-- Also clamps a bucket written under a larger capacity than today's.
if tokens > capacity then
  tokens = capacity
end

local allowed = 0
local retry_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) * 1000 / rate)
end
local reset_ms = math.ceil((capacity - tokens) * 1000 / rate)

redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], reset_ms + 1000)
return {allowed, math.floor(tokens), retry_ms, reset_ms}
