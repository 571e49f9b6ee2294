-- Erase everything held about one citizen in one generation, and tell the API processes.
--
-- The caller first removed the identifier index entries its reading of the citizen's identifiers set
-- listed (they sit in other slots: forget_identifier.lua, one each). Should the set hold anything else by
-- now (an event teaching the citizen a new identifier was applied meanwhile), deleting it would leave that
-- entry behind, and the entry would bring the citizen back with any later event naming the identifier:
-- nothing is deleted, and the caller reads the set and tries again.
--
-- KEYS: every key of the citizen (CitizenKeys.erasable), the identifiers set first
-- ARGV: 1 channel ("": publish nothing), 2 the message announcing the erasure, 3 how many identifiers
--       the caller read, then those identifiers ("kind:value")
-- Returns how many keys existed, or -1 (nothing done) when the identifiers set holds others.
local listed = tonumber(ARGV[3])
if redis.call('SCARD', KEYS[1]) ~= listed then
  return -1
end
for i = 4, 3 + listed do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then
    return -1
  end
end
local removed = redis.call('DEL', unpack(KEYS))
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return removed
