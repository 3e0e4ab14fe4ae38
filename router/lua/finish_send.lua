-- Record the outcome of one delivery attempt, only if that attempt is still
-- the current one: a late answer from a provider call that was already
-- reconciled (or superseded) changes nothing.
-- ARGV: message id, attempt, status, provider id, error, retry due ms (0: none), event payload.
local id, attempt, status = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local k = delivery_key(id)
local f = redis.call("HMGET", k, "status", "attempts")
if f[1] ~= "sending" or tonumber(f[2] or 0) ~= attempt then return 0 end
redis.call("HSET", k, "status", status, "error", ARGV[5], "updated_at", NOW_S)
if ARGV[4] ~= "" then redis.call("HSET", k, "provider_id", ARGV[4]) end
if status == "retry" then
  redis.call("ZADD", RETRIES, ARGV[6], id)
else
  redis.call("ZREM", RETRIES, id)
end
redis.call("XADD", EVENTS, "*", "e", ARGV[7])
return 1
