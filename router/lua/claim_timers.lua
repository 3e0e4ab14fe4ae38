-- Take the timers that are due, with a lease: each is pushed forward by the
-- lease, so if this worker dies before handling it another worker will. The
-- handler's own script removes the timer when its effect is done.
-- ARGV: lease ms, limit.
local lease_ms, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call("ZRANGEBYSCORE", timers_key(), "-inf", NOW_S, "LIMIT", 0, limit)
for _, member in ipairs(due) do
  redis.call("ZADD", timers_key(), "XX", S(NOW + lease_ms), member)
end
return due
