-- Record one open stream's presence entry, or extend it (see presence_sweep.lua), timed by Redis's clock.
--
-- KEYS: 1 the citizen's presence key
-- ARGV: 1 the member ("viewer<TAB>connection"), 2 how long it lives from now (seconds), 3 the key's TTL
--       in seconds
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
