-- Record a delivery attempt before the provider is called: a message is sent
-- at most once. Only a new message, or one whose retry is due, may go; the
-- attempt holds a lease (a watchdog entry in the retry schedule), so a
-- dispatcher that dies mid-send is noticed and its attempt reconciled, while
-- a send still in flight is left alone.
-- ARGV: message id, payload, lease ms.
-- Returns {"go", attempt}, {"in_flight", attempt}, {"stale", attempt} or {final status, attempts}.
local message_id, payload, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local k = delivery_key(message_id)
local f = redis.call("HMGET", k, "status", "attempts", "sending_since")
local status, attempts = f[1], tonumber(f[2] or 0)
if status == "sending" then
  if NOW - tonumber(f[3] or 0) < lease_ms then return {"in_flight", attempts} end
  return {"stale", attempts}
end
if status and status ~= "retry" then
  -- finished: a crash between scheduling a retry and recording the outcome
  -- must not leave it in the retry schedule for ever
  redis.call("ZREM", retries_key(), message_id)
  return {status, attempts}
end
if status == "retry" then
  local due = redis.call("ZSCORE", retries_key(), message_id)
  if due and tonumber(due) > NOW then return {"scheduled", attempts} end
end
local attempt = redis.call("HINCRBY", k, "attempts", 1)
redis.call("HSET", k, "status", "sending", "payload", payload, "sending_since", NOW_S, "updated_at", NOW_S)
redis.call("ZADD", retries_key(), S(NOW + lease_ms), message_id)
return {"go", attempt}
