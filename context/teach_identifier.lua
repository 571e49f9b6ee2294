-- Point an identifier at a citizen, unless a later event already pointed it elsewhere.
--
-- KEYS: 1 identifier entry (hash: citizen, stamp)
-- ARGV: 1 citizen id, 2 score (time of the teaching event), 3 event key, 4 when it expires (Unix seconds)
-- Returns 1 when the entry now names this citizen, 0 when a later event's citizen keeps it.
-- "Later" is by event time, then event key, as for profile fields: whatever order events arrive in
-- (live, redriven, or replayed by a rebuild), an identifier ends with the latest citizen who used it.
local stamp = redis.call('HGET', KEYS[1], 'stamp')
local score = tonumber(ARGV[2])
if stamp then
  local space = string.find(stamp, ' ', 1, true)
  local held_score, held_key = tonumber(string.sub(stamp, 1, space - 1)), string.sub(stamp, space + 1)
  if score < held_score or (score == held_score and ARGV[3] <= held_key) then
    redis.call('EXPIREAT', KEYS[1], ARGV[4])
    return 0
  end
end
redis.call('HSET', KEYS[1], 'citizen', ARGV[1], 'stamp', ARGV[2] .. ' ' .. ARGV[3])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1
