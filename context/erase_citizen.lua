-- Erase everything held about one citizen in one generation, and tell the API processes.
--
-- The caller first removed the identifier index entries its reading of the citizen's identifiers set
-- listed (forget_identifier.lua, one each, only those still naming the citizen). An event applied since
-- can have taught the citizen an identifier again: a new one (the set holds it), or one just forgotten
-- (its entry names the citizen once more). Deleting the set then would leave that entry behind, and the
-- entry would bring the citizen back with any later event naming the identifier: nothing is deleted, and
-- the caller reads the set and tries again.
--
-- Then it marks the citizen erased as of the erasure's time (context/keys.py, erasure_mark_key): the
-- apply script applies none of their events timed at or before it, so an earlier event applied after the
-- erasure (read from another partition, redriven, or replayed by a rebuild) does not bring them back. A
-- later mark is never moved back by an earlier erasure replayed. An event held with a later time than
-- the erasure's (publishers' clocks may run ahead, within the skew the decoder allows) moves the mark on to
-- its time: replayed, it would otherwise come back.
--
-- KEYS: the erasure mark; every key of the citizen (CitizenKeys.erasable), the identifiers set first and
--       the timeline second; then the index entries of the identifiers the caller read, in their order
-- ARGV: 1 channel ("": publish nothing), 2 the message announcing the erasure, 3 the citizen's id, 4 the
--       erasure's time (a timeline score), 5 when the mark expires (Unix seconds), 6 how many identifiers
--       the caller read, then those identifiers ("kind:value")
-- Returns how many of the citizen's keys existed, or -1 (nothing done) when the citizen was taught an
-- identifier since the caller read the set.
local citizen, erased_at, listed = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[6])
local last_citizen_key = #KEYS - listed
if redis.call('SCARD', KEYS[2]) ~= listed then
  return -1
end
for i = 1, listed do
  if redis.call('SISMEMBER', KEYS[2], ARGV[6 + i]) == 0
      or redis.call('HGET', KEYS[last_citizen_key + i], 'citizen') == citizen then
    return -1
  end
end
local newest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')[2]
if newest and tonumber(newest) > erased_at then
  erased_at = tonumber(newest)
end
local marked = tonumber(redis.call('GET', KEYS[1]) or '')
if not marked or erased_at > marked then
  redis.call('SET', KEYS[1], string.format('%d', erased_at))
  redis.call('EXPIREAT', KEYS[1], ARGV[5])
end
local removed = redis.call('DEL', unpack(KEYS, 2, last_citizen_key))
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return removed
