-- Remove an identifier index entry, but only while it still points at the erased citizen: the number
-- may since have been taught for someone else, whose entry must stay.
--
-- KEYS: 1 the identifier entry (hash)
-- ARGV: 1 the erased citizen's id
if redis.call('HGET', KEYS[1], 'citizen') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
