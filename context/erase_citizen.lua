-- Erase everything held about one citizen in one generation, and tell the API processes.
--
-- KEYS: every key of the citizen (CitizenKeys.erasable)
-- ARGV: 1 channel ("": publish nothing), 2 the message announcing the erasure
-- Returns how many keys existed.
local removed = redis.call('DEL', unpack(KEYS))
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return removed
