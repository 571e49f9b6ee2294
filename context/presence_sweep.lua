-- Keep an API process's presence entries alive and read who views each citizen, for many citizens in one
-- call (one command to pack and send instead of four per citizen).
--
-- KEYS: the citizens' presence keys (sorted sets: member "viewer<TAB>connection", score = expiry time)
-- ARGV: 1 how long the process's entries live from now (seconds), 2 the keys' TTL in seconds,
--       then for each key in order: the count n of this process's entries, then those n members
--       (a count of 0 only reads the key)
-- Returns, for each key in order, the members still live.
--
-- Times are Redis's own clock (TIME), not the API process's: every replica writes and expires entries on
-- one clock, so a replica whose clock runs ahead cannot remove the live entries of the others.
-- Only entries still present are extended (ZADD XX): a stream that left while this call was on its way
-- must not come back as a ghost.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local expiry, ttl = now + tonumber(ARGV[1]), ARGV[2]
local position = 3
local viewers = {}
for index, key in ipairs(KEYS) do
  local count = tonumber(ARGV[position])
  position = position + 1
  if count > 0 then
    for member = position, position + count - 1 do
      redis.call('ZADD', key, 'XX', expiry, ARGV[member])
    end
    position = position + count
    redis.call('EXPIRE', key, ttl)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  viewers[index] = redis.call('ZRANGE', key, 0, -1)
end
return viewers
