-- One request against a rate limit, by the generic cell rate algorithm (GCRA): each request moves a
-- "theoretical arrival time" forward by one emission interval; a request that would move it further
-- than the burst tolerance ahead of now is refused. One key per caller, no counters to sweep.
--
-- KEYS: 1 the caller's limit key
-- ARGV: 1 emission interval (microseconds), 2 burst tolerance (microseconds)
-- Returns 0 when allowed, else how many microseconds until a request would be.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then
  return wait
end
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', math.ceil((tat + interval - now) / 1000) + 1)
return 0
