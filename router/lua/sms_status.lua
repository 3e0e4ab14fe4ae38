-- An SMS delivery status report from Twilio, atomically: the lookup by
-- MessageSid, the order check, the update and its event are one step, so two
-- callbacks racing each other (a retry, a late one) can never move a status
-- back or count twice.
-- ARGV: MessageSid, status, error, then (status, rank) pairs: the order.
local sid, status, err = ARGV[1], ARGV[2], ARGV[3]
local rank = {}
for i = 4, #ARGV, 2 do rank[ARGV[i]] = tonumber(ARGV[i + 1]) end
local id = redis.call("GET", B .. ":provider:" .. sid)
if not id then return {"unknown", ""} end
local k = B .. ":msg:" .. id
local f = redis.call("HMGET", k, "status", "attempts", "conversation")
local current = f[1] or ""
if (rank[current] or 0) >= rank[status] then return {"unchanged", current} end
redis.call("HSET", k, "status", status, "error", err, "provider_id", sid, "updated_at", S(NOW))
if current == "sending" then
  -- the report overtook the dispatcher's own record of the send: the message
  -- is settled, so the send's lease watchdog leaves the retry schedule
  redis.call("ZREM", B .. ":retries", id)
end
emit({type = "delivery", channel = "sms", direction = "out", provider_id = sid,
  conversation = f[3] or "", message = id, status = status, error = err,
  attempt = tonumber(f[2] or 0)})
return {"updated", status}
