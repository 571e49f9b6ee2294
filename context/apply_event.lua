-- Apply one event to one citizen's context, atomically and idempotently.
--
-- KEYS: 1 timeline (zset), 2 events (hash), 3 meta (hash), 4 changes (list),
--       5 facts (hash), 6 profile (hash), 7 profile stamps (hash), 8 identifiers (set)
-- ARGV: 1 event key (source, id), 2 score (time, microseconds), 3 the event's stored form
--       (context/compact.py), 4 max events, 5 age cutoff score, 6 change log length,
--       7 channel ("": publish nothing), 8 citizen id as a JSON string, 9 epoch as a JSON string,
--       10 when the citizen's keys expire (Unix seconds; see the end), 11 the event's summary fact (stored
--       form, or "" when it has none), 12 the keep-alive period's stamp (see the end),
--       13 the event's JSON (for the published change; "" when nothing is published),
--       14 when the identifiers set expires (Unix seconds), 15.. profile updates as pairs: field name,
--       value as JSON
-- Returns {applied (1 or 0), version, identifiers whose index entries the writer must keep alive}.
local event_key, score = ARGV[1], tonumber(ARGV[2])
local meta = redis.call('HMGET', KEYS[3], 'version', 'kept')
local version = tonumber(meta[1] or '0')

-- Seen before (redelivery after a restart, or a publisher's retry): nothing changes. Adding the event to
-- the timeline is the check (the timeline and the events hash hold the same keys). An event older than
-- the age cap is not added, and changes nothing the second time either: its profile fields hold already.
local in_window = score >= tonumber(ARGV[5])
if in_window and redis.call('ZADD', KEYS[1], 'NX', score, event_key) == 0 then
  return {0, version, {}}
end

-- Keys this event creates: they get their expiry now, the others once per keep-alive period (the end).
local created = {}

-- Profile fields first, whether or not the event itself stays in the timeline: a person's needs do not
-- expire with the event that stated them. Per field, the update with the later (time, event key) wins,
-- whatever the arrival order; applying the same update again changes nothing.
local profile_changed = false
for i = 15, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local stamp = redis.call('HGET', KEYS[7], field)
  local newer = true
  if stamp then
    local space = string.find(stamp, ' ', 1, true)
    local held_score, held_key = tonumber(string.sub(stamp, 1, space - 1)), string.sub(stamp, space + 1)
    newer = score > held_score or (score == held_score and event_key > held_key)
  end
  if newer then
    redis.call('HSET', KEYS[6], field, value)
    if redis.call('HSET', KEYS[7], field, ARGV[2] .. ' ' .. event_key) == 1 then
      -- A field set for the first time (rare): the two hashes may have been created by it.
      created[6], created[7] = true, true
    end
    profile_changed = true
  end
end

-- The timeline: events older than the age cap are not kept.
local kept = false
if in_window then
  redis.call('HSET', KEYS[2], event_key, ARGV[3])
  if ARGV[11] ~= '' then
    redis.call('HSET', KEYS[5], event_key, ARGV[11])
    if redis.call('HLEN', KEYS[5]) == 1 then created[5] = true end
  end
  -- Cap by age, then by count; the oldest go first, and their summary facts with them.
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[5])
  local held = redis.call('ZCARD', KEYS[1])
  if held == 1 then
    -- The timeline and the events hash hold the same keys: both were created by this event.
    created[1], created[2] = true, true
  end
  local excess = held - #expired - tonumber(ARGV[4])
  if excess > 0 then
    local oldest = redis.call('ZRANGE', KEYS[1], #expired, #expired + excess - 1)
    for _, key in ipairs(oldest) do expired[#expired + 1] = key end
  end
  kept = true
  if #expired > 0 then
    redis.call('ZREM', KEYS[1], unpack(expired))
    redis.call('HDEL', KEYS[2], unpack(expired))
    redis.call('HDEL', KEYS[5], unpack(expired))
    for _, key in ipairs(expired) do
      -- A late event older than all the kept ones falls straight off the end.
      if key == event_key then kept = false end
    end
  end
end

if not kept and not profile_changed then
  return {0, version, {}}
end

version = redis.call('HINCRBY', KEYS[3], 'version', 1)
if version == 1 then created[3] = true end
local profile = ''
if profile_changed then
  local fields = redis.call('HGETALL', KEYS[6])
  local parts = {}
  for i = 1, #fields, 2 do
    parts[#parts + 1] = '"' .. fields[i] .. '":' .. fields[i + 1]
  end
  profile = '{' .. table.concat(parts, ',') .. '}'
end
-- The change log holds each change as "version\nprofile JSON\nevent key" (either may be empty): the
-- event itself is in the events hash already, and a stream that resumes reads it from there
-- (changes_since.lua). Keeping the whole change here stored every event twice.
local logged = redis.call('RPUSH', KEYS[4], version .. '\n' .. profile .. '\n' .. (kept and event_key or ''))
if logged == 1 then
  created[4] = true
elseif logged > tonumber(ARGV[6]) then
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[6]), -1)
end
if ARGV[7] ~= '' then
  local change = '{"citizen_id":' .. ARGV[8] .. ',"epoch":' .. ARGV[9] .. ',"version":' .. version
  if kept then
    change = change .. ',"event":' .. ARGV[13]
  end
  if profile_changed then
    change = change .. ',"profile":' .. profile
  end
  redis.call('PUBLISH', ARGV[7], change .. '}')
end

-- Expiry. Every key of the citizen expires at one moment, the end of the current keep-alive period plus
-- the inactivity expiry (ARGV[10]): never sooner than the expiry after this event. It is moved on once per
-- period, with the first change of a new one, not on every event: eight EXPIREs per event were a third of
-- this script's time. A key created meanwhile gets the same moment at once.
-- The identifiers set outlives the index entries it lists (which live up to one period past the citizen's
-- keys): an erasure finds every entry through it, however late it comes.
local stale = {}
if meta[2] ~= ARGV[12] then
  redis.call('HSET', KEYS[3], 'kept', ARGV[12])
  for i = 1, 7 do redis.call('EXPIREAT', KEYS[i], ARGV[10]) end
  redis.call('EXPIREAT', KEYS[8], ARGV[14])
  -- The identifier index entries must live as long as the citizen, but they sit in other slots (Redis
  -- Cluster), out of this script's reach. Once per period, they are handed back for the writer to extend
  -- (by the period's length more than the citizen's own expiry, so never less): asking Redis for them on
  -- every batch cost a round trip and a command per citizen.
  stale = redis.call('SMEMBERS', KEYS[8])
else
  for i = 1, 7 do
    if created[i] then redis.call('EXPIREAT', KEYS[i], ARGV[10]) end
  end
end
return {1, version, stale}
