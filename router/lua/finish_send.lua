-- Record the outcome of one delivery attempt, only if that attempt is still
-- the current one: a late answer from a provider call that was already
-- reconciled (or superseded) changes nothing.
-- ARGV: message id, attempt, status, provider id, error, retry due ms (0: none), event payload.
local message_id, attempt, status = ARGV[1], tonumber(ARGV[2]), ARGV[3]
-- err: the error, if any; retry_at_ms: when a retry is due (0: none); event: its packed event
local provider_id, err, retry_at_ms, event = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local k = delivery_key(message_id)
local f = redis.call("HMGET", k, "status", "attempts")
if f[1] ~= "sending" or tonumber(f[2] or 0) ~= attempt then return 0 end
redis.call("HSET", k, "status", status, "error", err, "updated_at", NOW_S)
if provider_id ~= "" then redis.call("HSET", k, "provider_id", provider_id) end
if status == "retry" then
  redis.call("ZADD", retries_key(), retry_at_ms, message_id)
else
  redis.call("ZREM", retries_key(), message_id)
end
redis.call("XADD", events_key(), "*", "e", event)
return 1
