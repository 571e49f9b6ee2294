-- Apply one event to one citizen's context, atomically and idempotently.
--
-- KEYS: 1 timeline (zset), 2 events (hash), 3 meta (hash), 4 changes (list)
-- ARGV: 1 event key (source, id), 2 score (time, microseconds), 3 event JSON,
--       4 max events, 5 age cutoff score, 6 change log length, 7 channel,
--       8 citizen id as a JSON string, 9 epoch as a JSON string, 10 expiry (seconds)
-- Returns {applied (1 or 0), version}.
local event_key, score = ARGV[1], tonumber(ARGV[2])
local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')

-- Seen before (redelivery after a restart, or a publisher's retry): nothing changes.
if redis.call('HEXISTS', KEYS[2], event_key) == 1 then
  return {0, version}
end
-- Older than the age cap: it would be dropped at once, so it is not a change.
if score < tonumber(ARGV[5]) then
  return {0, version}
end

redis.call('ZADD', KEYS[1], score, event_key)
redis.call('HSET', KEYS[2], event_key, ARGV[3])

-- Cap by age, then by count; the oldest go first.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[5])
local excess = redis.call('ZCARD', KEYS[1]) - #expired - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], #expired, #expired + excess - 1)
  for _, key in ipairs(oldest) do expired[#expired + 1] = key end
end
local kept = true
if #expired > 0 then
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('HDEL', KEYS[2], unpack(expired))
  for _, key in ipairs(expired) do
    if key == event_key then kept = false end
  end
end
-- A late event older than all the kept ones falls straight off the end: no visible change.
if not kept then
  return {0, version}
end

version = redis.call('HINCRBY', KEYS[3], 'version', 1)
local change = '{"citizen_id":' .. ARGV[8] .. ',"epoch":' .. ARGV[9] .. ',"version":' .. version ..
  ',"event":' .. ARGV[3] .. '}'
redis.call('RPUSH', KEYS[4], change)
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[6]), -1)
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[10]) end
redis.call('PUBLISH', ARGV[7], change)
return {1, version}
