-- One page of a citizen's timeline, newest first, strictly older than a cursor.
--
-- KEYS: 1 timeline (zset), 2 events (hash)
-- ARGV: 1 highest score to include ("+inf" for the first page), 2 cursor event key ("" for none: events
--       at the highest score whose key sorts at or above it were on the previous page),
--       3 lowest score to include ("-inf" for no lower bound), 4 how many
-- Returns a flat list: event key, score, event JSON, ... (at most ARGV[4] events).
local wanted = tonumber(ARGV[4])
local items
local rank = ARGV[2] ~= '' and redis.call('ZREVRANK', KEYS[1], ARGV[2])
if rank then
  -- The cursor's event is still there: continue right after it, however many events share its time.
  items = redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + wanted, 'WITHSCORES')
  local lowest = tonumber(ARGV[3]) or -math.huge
  local within = {}
  for i = 1, #items, 2 do
    if tonumber(items[i + 1]) >= lowest then
      within[#within + 1] = items[i]
      within[#within + 1] = items[i + 1]
    end
  end
  items = within
else
  -- It fell off the timeline meanwhile: continue below its position by score, skipping the events that
  -- share its time and sort at or above it (the last page showed those).
  items = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[3], 'WITHSCORES', 'LIMIT', 0, wanted + 1000)
end
-- Whether `a` sorts at or above `b` as a sorted set orders members of one score: byte by byte. Lua's own
-- `>=` on strings follows the collation of Redis's locale (Redis sets LC_COLLATE from its environment).
local function at_or_above(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a >= #b
end

local keys, scores = {}, {}
for i = 1, #items, 2 do
  local key, score = items[i], items[i + 1]
  local skip = not rank and ARGV[2] ~= '' and tonumber(score) == tonumber(ARGV[1]) and at_or_above(key, ARGV[2])
  if not skip and #keys < wanted then
    keys[#keys + 1] = key
    scores[#scores + 1] = score
  end
end
local result = {}
if #keys > 0 then
  local events = redis.call('HMGET', KEYS[2], unpack(keys))
  for i = 1, #keys do
    result[#result + 1] = keys[i]
    result[#result + 1] = scores[i]
    result[#result + 1] = events[i]
  end
end
return result
