-- Extend one citizen's identifier index entries, each only while it names that citizen, then mark the
-- period's keep-alive done in the citizen's meta (apply_events.lua, `entries_still_due`): all in one step,
-- so a failure leaves the keep-alive due, and the citizen's events of the batch, tried again in the same
-- period, ask for it again.
--
-- A number taught since to someone else is that citizen's to keep alive: kept alive by the previous
-- owner, it would outlive its own owner's identifiers set, through which an erasure finds it. An entry
-- holding another type than the apply script writes is left as it is: nothing of the citizen's.
-- Not marked on a meta that is gone (the citizen erased, or expired, since): marking would recreate it.
--
-- KEYS: 1 the citizen's meta (hash), then the entries (hashes)
-- ARGV: 1 the citizen whose set listed them, 2 when they expire (Unix seconds), 3 the keep-alive period's
--       stamp
for i = 2, #KEYS do
  local held = redis.pcall('HGET', KEYS[i], 'citizen')
  if type(held) == 'table' and held.err and not string.find(held.err, '^WRONGTYPE') then
    return redis.error_reply(held.err)
  end
  if held == ARGV[1] then
    redis.call('EXPIREAT', KEYS[i], ARGV[2])
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'entries-kept', ARGV[3])
end
return 0
