-- The changes a stream missed, with their events, read in one atomic step.
--
-- KEYS: 1 changes (list of "version\n" + "p" when it set profile fields + its event key, oldest first; see
--       apply_events.lua), 2 events (hash), 3 profile (hash)
-- ARGV: 1 the version the stream holds
-- Returns {version of the newest change held (0: none; -1: the log is not in a form read here), the
-- profile as it stands (its hash's fields and values, flat; empty unless a change returned set profile
-- fields), then for every change after ARGV[1], oldest first: its version, "p" if it set profile fields
-- ("" if not), its event key ("" for none), its stored event (nil when the event has left the timeline
-- since)}. A change that set profile fields gets the current profile, not the one it left: the log keeps
-- no earlier values (apply_events.lua), and a stream that replays the changes ends where the profile
-- stands now. Entries of the earlier form ("version\nprofile JSON\nevent key") are read too, the current
-- profile given for theirs.
local held = tonumber(ARGV[1])
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local reply = {0, {}}
local any_profile = false
local keys, slots = {}, {}
for _, entry in ipairs(entries) do
  local first = string.find(entry, '\n', 1, true)
  local version = first and tonumber(string.sub(entry, 1, first - 1))
  if not version then
    -- A whole change, as the log held them once: the caller re-syncs from a snapshot instead.
    return {-1, {}}
  end
  local second = string.find(entry, '\n', first + 1, true)
  local changed_profile, key
  if second then
    changed_profile, key = second > first + 1, string.sub(entry, second + 1)
  else
    changed_profile = string.sub(entry, first + 1, first + 1) == 'p'
    key = string.sub(entry, changed_profile and first + 2 or first + 1)
  end
  reply[1] = version
  if version > held then
    reply[#reply + 1] = version
    reply[#reply + 1] = changed_profile and 'p' or ''
    any_profile = any_profile or changed_profile
    reply[#reply + 1] = key
    reply[#reply + 1] = false
    if key ~= '' then
      keys[#keys + 1] = key
      slots[#slots + 1] = #reply
    end
  end
end
if #keys > 0 then
  local events = redis.call('HMGET', KEYS[2], unpack(keys))
  for i = 1, #keys do
    reply[slots[i]] = events[i]
  end
end
if any_profile then
  reply[2] = redis.call('HGETALL', KEYS[3])
end
return reply
