-- Extend an identifier index entry's expiry, but only while it names the citizen whose identifiers set
-- listed it: a number taught since to someone else is that citizen's to keep alive. Kept alive by the
-- previous owner, it would outlive its own owner's identifiers set, through which an erasure finds it.
--
-- KEYS: 1 the identifier entry (hash)
-- ARGV: 1 the citizen whose set listed it, 2 when it expires (Unix seconds)
if redis.call('HGET', KEYS[1], 'citizen') == ARGV[1] then
  return redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return 0
