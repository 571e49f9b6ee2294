-- Read one citizen's version and newest events in one atomic step, so they always match.
--
-- KEYS: 1 timeline (zset), 2 events (hash), 3 meta (hash)
-- ARGV: 1 how many events, newest first
-- Returns {version, event JSON...}.
local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local keys = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local result = {version}
if #keys > 0 then
  local events = redis.call('HMGET', KEYS[2], unpack(keys))
  for i = 1, #events do result[#result + 1] = events[i] end
end
return result
