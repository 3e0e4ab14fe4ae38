-- Record a delivery attempt before the provider is called: a message is sent
-- at most once, so only a new message (or one waiting for its retry) may go.
-- ARGV: message id, payload. Returns {"go", attempt} or {status, attempts}.
local k = B .. ":msg:" .. ARGV[1]
local status = redis.call("HGET", k, "status")
if status and status ~= "retry" then
  -- finished (or being reconciled): a crash between scheduling a retry and
  -- recording the outcome must not leave it in the retry schedule for ever
  if status ~= "sending" then redis.call("ZREM", B .. ":retries", ARGV[1]) end
  return {status, tonumber(redis.call("HGET", k, "attempts") or 0)}
end
local attempt = redis.call("HINCRBY", k, "attempts", 1)
redis.call("HSET", k, "status", "sending", "payload", ARGV[2], "updated_at", S(NOW))
redis.call("ZREM", B .. ":retries", ARGV[1])
return {"go", attempt}
