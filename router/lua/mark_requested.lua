-- Mark that a delivery's current attempt is about to call its provider, so a
-- reconcile after a crash can tell "never called" from "called, no answer".
-- One step, with nothing of lib.lua but its key: it runs before every provider request.
-- KEYS: base. ARGV: message id, then field/value pairs to record alongside.
local message_id = ARGV[1]
local k = delivery_key(message_id)
local attempt = redis.call("HGET", k, "attempts") or "0"
redis.call("HSET", k, "requested", attempt)
for i = 2, #ARGV - 1, 2 do
  redis.call("HSET", k, ARGV[i], ARGV[i + 1])
end
return tonumber(attempt)
