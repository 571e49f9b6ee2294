-- Apply a run of events, each to its citizen's context, in order; each event idempotently. Like any script,
-- the whole call runs atomically (no other command runs meanwhile), which is why a call is kept short.
--
-- One call applies up to a few dozen events (context/store.py, EVENTS_PER_CALL): one script call per
-- event cost the writer more Python than everything else it does, and Redis a script invocation each.
--
-- KEYS: one per event, its citizen's key base ("prefix:epoch:{citizen}"). A citizen's eight keys are that
--       base with a suffix (context/keys.py, CitizenKeys); they share its hash tag, so its slot. Then one
--       per event, its citizen's erasure mark (context/keys.py, erasure_mark_key; same slot). Then the
--       identifier index entries the events teach (context/keys.py, identifier_key), in the events' order.
--       Then, when ARGV[10] is "1", the key naming the served generation.
-- ARGV: 1 max events, 2 age cutoff score, 3 change log length, 4 channel ("": publish nothing),
--       5 epoch as a JSON string, 6 when the citizens' keys expire (Unix seconds; see the end),
--       7 the keep-alive period's stamp (see the end), 8 when the identifiers sets expire (Unix seconds),
--       9 when the index entries taught expire (Unix seconds), 10 "1" when the generation written must
--       be the one served ("": the caller chose the generation itself), 11 the generation written (the one
--       in the keys), 12 the number of events;
--       then per event, in KEYS order: event key (source, id), score (time, microseconds), the event's
--       stored form (context/compact.py), citizen id, the event's summary fact (stored form, or ""),
--       the number of profile updates, the number of identifiers the event teaches, then that many
--       profile pairs (field name, value as JSON), then the identifiers as the citizen's identifiers set
--       lists them ("kind:value"), in the order of their index entries in KEYS.
-- Returns {applied (1 or 0), version} per event, flattened, then one more item: the identifiers whose
-- index entries the writer must keep alive (see `entries_still_due`), each as the citizen whose set lists
-- it, a line feed, and the identifier ("kind:value"): the writer extends an entry only while it names that
-- citizen (keep_entries_alive.lua). An event Redis refuses (see `refusal`) gets {-1, its kind} instead, and
-- the events after it are applied all the same. Returns nil, having changed nothing, when
-- ARGV[10] asks for the served generation and that is no longer ARGV[11]: the writer takes the served
-- generation as it last read it, and a rebuild may have switched it since (the writer then applies the
-- events again, to the one now served).
--
-- A published change is the change's JSON (citizen, generation, version, and the whole profile when it
-- changed), then, when the event joined the timeline, a line feed and the event's stored form, which the
-- API expands (api/streaming.py): sending the event's JSON a second time, for this alone, cost Redis and
-- the consumer more than a tenth of their work per event.
local SUFFIXES = {':timeline', ':events', ':meta', ':changes', ':facts', ':profile', ':profile-stamps',
                  ':identifiers'}
local max_events, cutoff, log_length = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local channel, epoch_json, expires_at, period_stamp = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local identifiers_expire_at, entries_expire_at, event_count = ARGV[8], ARGV[9], tonumber(ARGV[12])
if ARGV[10] == '1' and redis.call('GET', KEYS[#KEYS]) ~= ARGV[11] then
  return false
end

-- The event key the event being applied added to its timeline (the timeline's key, then it), while that
-- event is being applied: an event the timeline holds counts as applied, so one that fails part-way must
-- leave it again, or applying it once the cause is mended would be taken for a redelivery.
local added = nil

-- Whether string `a` sorts after `b` byte by byte, so by code point, as Python orders them (the batch
-- pipeline resolves identifiers within a batch by the same rule, events/pipeline.py). Lua's own `>` on
-- strings follows the collation of Redis's locale (Redis sets LC_COLLATE from its environment), which
-- orders "B" after "a" under en_US.UTF-8, say.
local function after_bytewise(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- Whether a change stamped (score, event key) is later than `stamp` ("score event-key", or false: none).
-- "Later" is by event time, then event key: whatever order events arrive in (live, redriven, or replayed by
-- a rebuild), the latest one wins.
local function later_than(stamp, score, event_key)
  if not stamp then return true end
  local space = string.find(stamp, ' ', 1, true)
  local held_score = tonumber(string.sub(stamp, 1, space - 1))
  if score ~= held_score then return score > held_score end
  return after_bytewise(event_key, string.sub(stamp, space + 1))
end

-- Remove `members` from `key` with `command` (ZREM, HDEL), a thousand at a time: unpack() of more values
-- than Lua's stack holds (about 8,000) fails the whole call, and a failing call is retried for ever. A
-- timeline can hold that many past its caps once, when the count cap has been lowered.
local function remove_all(command, key, members)
  for first = 1, #members, 1000 do
    redis.call(command, key, unpack(members, first, math.min(first + 999, #members)))
  end
end

-- Point an identifier's index entry (hash: citizen, stamp) at a citizen, unless a later event pointed it
-- elsewhere; an entry that names the citizen then lives on until `entries_expire_at`. One that names
-- someone else keeps its own owner's expiry: extended by this citizen, it could outlive its owner's
-- identifiers set, through which an erasure finds it.
-- A teaching that wins also ends the entry's `superseded` (see `supersede`) if it is not later than it.
local function teach(entry, citizen, score, score_text, event_key)
  local held = redis.call('HMGET', entry, 'stamp', 'superseded')
  if later_than(held[1], score, event_key) then
    redis.call('HSET', entry, 'citizen', citizen, 'stamp', score_text .. ' ' .. event_key)
    if held[2] and not ((tonumber(held[2]) or score) > score) then
      redis.call('HDEL', entry, 'superseded')
    end
  elseif redis.call('HGET', entry, 'citizen') ~= citizen then
    return
  end
  redis.call('EXPIREAT', entry, entries_expire_at)
end

-- What an event of an erased citizen (timed up to their erasure mark) taught, refused, still tells: from
-- its time on, the identifier was theirs, not the one's the entry names. The entry of someone else taught
-- earlier is marked `superseded` at that time (the earliest such, if several), and an event timed from
-- then on that names only the identifier is no longer found by it (events/pipeline.py, lookups): it was
-- the erased citizen's. Applied live, the teaching had taken the entry over, and the erasure removed it.
-- Only the time is kept, never who taught it; nothing is written where no entry is (that would keep the
-- erased citizen's identifier), nor to an entry that is not what this script writes.
local function supersede(entry, citizen, score, score_text, event_key)
  local held = redis.pcall('HMGET', entry, 'citizen', 'stamp', 'superseded')
  if held.err or not held[1] or held[1] == citizen or not later_than(held[2], score, event_key) then
    return
  end
  local since = tonumber(held[3] or '')
  if not since or score < since then
    redis.call('HSET', entry, 'superseded', score_text)
  end
end

-- The identifier index entries must live as long as the citizen, but they sit in other slots (Redis
-- Cluster), out of this script's reach. With the citizen's first change of a period, which moves their keys
-- and identifiers set on (the end), the set's members are handed back for the writer to extend (by the
-- period's length more than the citizen's own expiry, so never less), and the writer marks that done
-- (keep_entries_alive.lua): asking Redis for them on every batch cost a round trip and a command per
-- citizen. Until it has, an event of the citizen that changes nothing (a duplicate: the batch tried again
-- after failing between this script and the keep-alive) hands them back again; before, this script marked
-- the period done itself, and a keep-alive a failure cut short was lost for the period. Not before a change
-- has moved the keys and set on in the period (`kept`): the entries would outlive the set that an erasure
-- finds them through. A set of another type then only keeps nothing alive. Once per call for a citizen
-- (`handed_back`, by meta key): until the keep-alive, after the call, each such event would ask again.
local handed_back = {}
local function entries_still_due(keys, meta)
  if meta[2] ~= period_stamp or meta[3] == period_stamp or handed_back[keys[3]] then return {} end
  handed_back[keys[3]] = true
  local members = redis.pcall('SMEMBERS', keys[8])
  if members.err then return {} end
  return members
end

-- One event: `base` is its citizen's key base, its own arguments start at ARGV[at] (see above), and the
-- index entries it teaches at KEYS[entry].
-- Returns applied (1 or 0), the version after it, and the identifiers to keep alive (a table).
local function apply_one(base, mark, at, entry)
  local keys = {}
  for i, suffix in ipairs(SUFFIXES) do keys[i] = base .. suffix end
  local event_key, score_text, stored, citizen = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local fact = ARGV[at + 4]
  local score = tonumber(score_text)

  local first_update, last_update = at + 7, at + 6 + 2 * tonumber(ARGV[at + 5])
  local first_taught, last_taught = last_update + 1, last_update + tonumber(ARGV[at + 6])

  -- An event of a citizen erased since it happened changes nothing of theirs, and teaches nothing:
  -- applied after the erasure (from another partition, redriven, or replayed by a rebuild), it would bring
  -- them back. What it taught only supersedes someone else's earlier entry (see `supersede`).
  local erased_at = redis.call('GET', mark)
  if erased_at and score <= tonumber(erased_at) then
    for i = 0, last_taught - first_taught do
      supersede(KEYS[entry + i], citizen, score, score_text, event_key)
    end
    return 0, tonumber(redis.call('HGET', keys[3], 'version') or '0') or 0, {}
  end

  -- What the event teaches, whatever else it changes or not (each teaching extends its entry): the index
  -- entries first, then the citizen's identifiers set, through which an erasure finds them. The set
  -- outlives the entries it lists. Here rather than as commands of their own per identifier: a script
  -- call each cost Redis more than the teaching itself, and the consumer a reply to read.
  if first_taught <= last_taught then
    for i = 0, last_taught - first_taught do
      teach(KEYS[entry + i], citizen, score, score_text, event_key)
    end
    redis.call('SADD', keys[8], unpack(ARGV, first_taught, last_taught))
    redis.call('EXPIREAT', keys[8], identifiers_expire_at)
  end

  local meta = redis.call('HMGET', keys[3], 'version', 'kept', 'entries-kept')
  local held = meta[1] or '0'
  -- Only a version as this script writes it (Lua's tonumber also takes "1.5", "0x10" or " 7", which
  -- HINCRBY refuses): refused (see `refusal`) before the event changes more than its teachings.
  if held ~= '0' and not (string.find(held, '^[1-9]%d*$') and #held <= 15) then
    error('ERR the version held is not an integer', 0)
  end
  local version = tonumber(held)

  -- Seen before (redelivery after a restart, or a publisher's retry): nothing changes. Adding the event to
  -- the timeline is the check (the timeline and the events hash hold the same keys). An event older than
  -- the age cap is not added, and changes nothing the second time either: its profile fields hold already.
  local in_window = score >= cutoff
  if in_window then
    if redis.call('ZADD', keys[1], 'NX', score, event_key) == 0 then
      return 0, version, entries_still_due(keys, meta)
    end
    added = {keys[1], event_key}
  end

  -- Keys this event creates: they get their expiry now, the others once per keep-alive period (the end).
  local created = {}

  -- Profile fields first, whether or not the event itself stays in the timeline: a person's needs do not
  -- expire with the event that stated them. Per field, the update with the later (time, event key) wins,
  -- whatever the arrival order; applying the same update again changes nothing.
  local profile_changed = false
  for i = first_update, last_update, 2 do
    local field, value = ARGV[i], ARGV[i + 1]
    if later_than(redis.call('HGET', keys[7], field), score, event_key) then
      redis.call('HSET', keys[6], field, value)
      if redis.call('HSET', keys[7], field, score_text .. ' ' .. event_key) == 1 then
        -- A field set for the first time (rare): the two hashes may have been created by it.
        created[6], created[7] = true, true
      end
      profile_changed = true
    end
  end

  -- The timeline: events older than the age cap are not kept.
  local kept = false
  if in_window then
    redis.call('HSET', keys[2], event_key, stored)
    if fact ~= '' then
      redis.call('HSET', keys[5], event_key, fact)
      if redis.call('HLEN', keys[5]) == 1 then created[5] = true end
    end
    -- Cap by age, then by count; the oldest go first, and their summary facts with them.
    local expired = redis.call('ZRANGEBYSCORE', keys[1], '-inf', '(' .. ARGV[2])
    local held = redis.call('ZCARD', keys[1])
    if held == 1 then
      -- The timeline and the events hash hold the same keys: both were created by this event.
      created[1], created[2] = true, true
    end
    local excess = held - #expired - max_events
    if excess > 0 then
      local oldest = redis.call('ZRANGE', keys[1], #expired, #expired + excess - 1)
      for _, key in ipairs(oldest) do expired[#expired + 1] = key end
    end
    kept = true
    if #expired > 0 then
      remove_all('ZREM', keys[1], expired)
      remove_all('HDEL', keys[2], expired)
      remove_all('HDEL', keys[5], expired)
      for _, key in ipairs(expired) do
        -- A late event older than all the kept ones falls straight off the end.
        if key == event_key then kept = false end
      end
    end
  end

  if not kept and not profile_changed then
    return 0, version, entries_still_due(keys, meta)
  end

  -- From here on, what could still fail on a key of the citizen (its identifiers set, its change log) is
  -- done before the change is counted or published: an event refused here (see `refusal`) leaves no
  -- version, change or message behind, only what applying it again writes the same way.
  local new_period = meta[2] ~= period_stamp
  local stale = new_period and redis.call('SMEMBERS', keys[8]) or {}
  if new_period then handed_back[keys[3]] = true end
  -- The whole profile, for the published change only (nothing is published during a rebuild).
  local profile = ''
  if profile_changed and channel ~= '' then
    local fields = redis.call('HGETALL', keys[6])
    local parts = {}
    for i = 1, #fields, 2 do
      parts[#parts + 1] = '"' .. fields[i] .. '":' .. fields[i + 1]
    end
    profile = '{' .. table.concat(parts, ',') .. '}'
  end
  -- The change log holds each change as "version\n", then "p" when it set profile fields, then its event
  -- key (either may be absent; an event key starts with a digit, context/service.py): the event itself is
  -- in the events hash already, and a stream that resumes reads it from there, with the current profile for
  -- a change that set some (changes_since.lua). Keeping the whole change here stored every event twice;
  -- keeping the profile as it stood (the earlier form, "version\nprofile JSON\nevent key") kept each
  -- earlier value (a withdrawn vulnerability flag) for as long as the log held it, past the event that set
  -- it and out of the citizen's export. One line feed, not two: an API of the earlier form takes such a
  -- log for one it cannot resume from, and sends a snapshot instead. Logged before the version is counted
  -- up (to the version read above, plus one: the script runs alone).
  version = version + 1
  local logged = redis.call(
    'RPUSH', keys[4], version .. '\n' .. (profile_changed and 'p' or '') .. (kept and event_key or '')
  )
  if logged == 1 then
    created[4] = true
  elseif logged > log_length then
    redis.call('LTRIM', keys[4], -log_length, -1)
  end
  redis.call('HINCRBY', keys[3], 'version', 1)
  if version == 1 then created[3] = true end
  if channel ~= '' then
    -- The id needs no JSON escaping: events are accepted only with ids of CITIZEN_ID_PATTERN's characters
    -- (models/events.py), and the identifier index only ever names such ids.
    local change = '{"citizen_id":"' .. citizen .. '","epoch":' .. epoch_json .. ',"version":' .. version
    if profile_changed then
      change = change .. ',"profile":' .. profile
    end
    redis.call('PUBLISH', channel, change .. (kept and '}\n' .. stored or '}'))
  end

  -- Expiry. Every key of the citizen expires at one moment, the end of the current keep-alive period plus
  -- the inactivity expiry (`expires_at`): never sooner than the expiry after this event. It is moved on once per
  -- period, with the first change of a new one, not on every event: eight EXPIREs per event were a third of
  -- this script's time. A key created meanwhile gets the same moment at once.
  -- The identifiers set outlives the index entries it lists (which live up to one period past the citizen's
  -- keys): an erasure finds every entry through it, however late it comes.
  if new_period then
    if #stale == 0 then
      -- Nothing to keep alive: done (or every event of the citizen that changes nothing would ask).
      redis.call('HSET', keys[3], 'kept', period_stamp, 'entries-kept', period_stamp)
    else
      redis.call('HSET', keys[3], 'kept', period_stamp)
    end
    for i = 1, 7 do redis.call('EXPIREAT', keys[i], expires_at) end
    redis.call('EXPIREAT', keys[8], identifiers_expire_at)
  else
    for i = 1, 7 do
      if created[i] then redis.call('EXPIREAT', keys[i], expires_at) end
    end
  end
  return 1, version, stale
end

-- What kind of refusal an error met while applying an event is, or nil for one about Redis's state rather
-- than the event. A refusal is the event's own: a key of its citizen (or an index entry it teaches) holding
-- another type than this script writes ("WRONGTYPE") or a value it does not write ("value"), or the script
-- itself failing on what it was given ("script"). Tried again, it would fail again, for ever, holding back
-- every later event of its partition: the writer dead-letters it instead. Anything else (out of memory,
-- read-only, not persisting, a command unknown, ...) fails the whole call, which the writer tries again.
local function refusal(err)
  local message = type(err) == 'table' and err.err or tostring(err)
  if string.find(message, '^WRONGTYPE ') then return 'WRONGTYPE' end
  if string.find(message, '^ERR .*not an integer') or string.find(message, '^ERR .*not a valid float') then
    return 'value'
  end
  -- A Lua error ("user_script:12: attempt to ..."), where a reply from Redis would start with its code.
  if not string.find(message, '^%u+ ') then return 'script' end
  return nil
end

local replies, stale, at, entry = {}, {}, 13, 2 * event_count + 1
for i = 1, event_count do
  added = nil
  local ok, applied, version, identifiers = pcall(apply_one, KEYS[i], KEYS[event_count + i], at, entry)
  if not ok then
    -- What the event wrote before failing stays (each of its writes is one that applying it again repeats),
    -- but not its place in the timeline, which says it was applied. Its keys may have been created by it:
    -- they expire as the citizen's do (a key of another type too, any command but EXPIREAT having failed).
    if added then redis.call('ZREM', added[1], added[2]) end
    for n, suffix in ipairs(SUFFIXES) do
      redis.call('EXPIREAT', KEYS[i] .. suffix, n == 8 and identifiers_expire_at or expires_at)
    end
    local kind = refusal(applied)
    if kind == nil then error(applied, 0) end
    applied, version, identifiers = -1, kind, {}
  end
  replies[#replies + 1] = applied
  replies[#replies + 1] = version
  for _, identifier in ipairs(identifiers) do stale[#stale + 1] = ARGV[at + 3] .. '\n' .. identifier end
  local taught = tonumber(ARGV[at + 6])
  at = at + 7 + 2 * tonumber(ARGV[at + 5]) + taught
  entry = entry + taught
end
replies[#replies + 1] = stale
return replies
