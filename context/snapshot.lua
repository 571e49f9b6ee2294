-- Read one citizen's version, profile, summary facts and newest events in one atomic step,
-- so that they always describe the same moment.
--
-- KEYS: 1 timeline (zset), 2 events (hash), 3 meta (hash), 4 facts (hash), 5 profile (hash)
-- ARGV: 1 how many events, newest first
-- Returns {version, profile (flat field/value list), facts (list), events (JSON list)}.
local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local keys = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local events = {}
if #keys > 0 then
  events = redis.call('HMGET', KEYS[2], unpack(keys))
end
return {version, redis.call('HGETALL', KEYS[5]), redis.call('HVALS', KEYS[4]), events}
