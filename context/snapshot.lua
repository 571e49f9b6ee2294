-- Read one citizen's version, profile, summary facts and newest events in one atomic step,
-- so that they always describe the same moment.
--
-- KEYS: 1 timeline (zset), 2 events (hash), 3 meta (hash), 4 facts (hash), 5 profile (hash)
-- ARGV: 1 how many events, newest first
-- Returns {version, profile (flat field/value list), facts (JSON array text), events (JSON array text)}.
-- The facts and the events come joined into one JSON array each (their stored forms, comma-separated):
-- the API reads, compares and expands two strings instead of a hundred and fifty (see README, Benchmarks).
local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local keys = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local events = {}
if #keys > 0 then
  -- An event the timeline names but the hash no longer holds is left out.
  for _, event in ipairs(redis.call('HMGET', KEYS[2], unpack(keys))) do
    if event then
      events[#events + 1] = event
    end
  end
end
local facts = redis.call('HVALS', KEYS[4])
return {
  version,
  redis.call('HGETALL', KEYS[5]),
  '[' .. table.concat(facts, ',') .. ']',
  '[' .. table.concat(events, ',') .. ']',
}
