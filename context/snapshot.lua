-- Read one citizen's version, profile, summary facts and newest events in one atomic step,
-- so that they always describe the same moment.
--
-- KEYS: 1 timeline (zset), 2 events (hash), 3 meta (hash), 4 facts (hash), 5 profile (hash)
-- ARGV: 1 how many events, newest first; 2 the stamp of the snapshot the caller holds a document of ("":
--       none); 3 the age cap's cutoff (a time score): older events are not served. The apply script removes
--       them only with the citizen's next change, so a citizen who has gone quiet still holds them.
-- Returns {version, profile (flat field/value list), facts (JSON array text), events (JSON array text),
-- stamp}, or only {version, stamp} when the stamp equals the caller's.
-- The facts and the events come joined into one JSON array each (their stored forms, comma-separated):
-- the API reads, compares and expands two strings instead of a hundred and fifty (see README, Benchmarks).
--
-- The stamp is the version, how many events the timeline holds within the age cap, and its newest event
-- key (an event passing the cap changes the count, so a kept document goes with it). Every change the apply
-- script makes to what this reads bumps the version, except one: a late event that falls straight off a
-- full timeline, taking with it events past the age cap, bumps nothing, and shortens the timeline. A
-- citizen whose keys expired or were erased and came back within the few minutes a document is kept
-- would need the same version, length and newest event to be taken for the same. Comparing stamps spares
-- Redis and the API the whole snapshot (about 17 KB for a hundred events) on every read of a citizen
-- whose context has not changed: most of Redis's time per context read.
local cutoff = ARGV[3]
local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local newest = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', cutoff, 'LIMIT', 0, 1)[1] or ''
local stamp = version .. ':' .. redis.call('ZCOUNT', KEYS[1], cutoff, '+inf') .. ':' .. newest
if stamp == ARGV[2] then
  return {version, stamp}
end
local keys = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', cutoff, 'LIMIT', 0, tonumber(ARGV[1]))
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
  stamp,
}
