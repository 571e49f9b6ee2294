-- Keep an API process's presence entries alive and read who views each citizen, for many citizens in one
-- call (one command to pack and send instead of four per citizen).
--
-- KEYS: the citizens' presence keys (sorted sets: member "viewer<TAB>connection", score = expiry time)
-- ARGV: 1 now (seconds), 2 the new expiry of the process's entries, 3 the keys' TTL in seconds,
--       then for each key in order: the count n of this process's entries, then those n members
-- Returns, for each key in order, the members still live.
--
-- Only entries still present are extended (ZADD XX): a stream that left while this call was on its way
-- must not come back as a ghost.
local now, expiry, ttl = ARGV[1], ARGV[2], ARGV[3]
local position = 4
local viewers = {}
for index, key in ipairs(KEYS) do
  local count = tonumber(ARGV[position])
  position = position + 1
  if count > 0 then
    for member = position, position + count - 1 do
      redis.call("ZADD", key, "XX", expiry, ARGV[member])
    end
    position = position + count
    redis.call("EXPIRE", key, ttl)
  end
  redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. now)
  viewers[index] = redis.call("ZRANGE", key, 0, -1)
end
return viewers
