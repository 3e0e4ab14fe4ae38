-- A status report on one dial of a callback (channels.voice.callbacks), atomically:
-- the lookup, the check that it is news, the decision (connected, dial again
-- after the policy's spacing, or give up) and its event are one step, so a
-- repeated report, a late report from an earlier dial, or two legs of one dial
-- reporting at once can never count a dial twice or schedule two dials.
-- The delivery record is the dispatcher's (begin_send / finish_send): a retry
-- here is the dispatcher's own retry schedule, so the next dial goes through
-- begin_send's lease like any other send.
-- ARGV: message id, attempt (the dispatcher attempt that placed the call, from
-- the callback URL), leg (agent | customer), CallStatus, CallSid, dials allowed,
-- spacing ms.
local message_id, attempt, leg, status, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local dials_allowed, spacing_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local k = delivery_key(message_id)
local f = redis.call("HMGET", k, "attempts", "status", "conversation", "settled", "provider_id")
local current = f[2] or ""
if not f[1] then return {"unknown", ""} end
if current == "connected" or current == "no-answer" then return {"unchanged", current} end
-- only the current dial counts, and each dial once
if f[1] ~= attempt or f[4] == attempt then return {"unchanged", current} end

local reached
if leg == "customer" and (status == "in-progress" or status == "completed") then
  reached = true
elseif status == "busy" or status == "no-answer" or status == "failed" or status == "canceled"
    or (leg == "agent" and status == "completed") then
  -- the agent's leg ended before the customer's leg answered (that report
  -- would have come first): this dial did not reach the customer
  reached = false
else
  return {"unchanged", current}  -- ringing, queued, initiated: nothing decided yet
end

local conv = f[3] and f[3] ~= "" and (conversation_key(f[3])) or nil
local dials = redis.call("HINCRBY", k, "dials", 1)
local outcome, err = "", ""
if reached then
  outcome = "connected"
  redis.call("ZREM", retries_key(), message_id)
elseif dials < dials_allowed then
  outcome = "retry"
  err = (leg == "agent" and "agent " or "customer ") .. status .. " (dial " .. dials .. " of " .. dials_allowed .. ")"
  redis.call("ZADD", retries_key(), S(NOW + spacing_ms), message_id)
else
  outcome = "no-answer"
  err = (leg == "agent" and "agent " or "customer ") .. status .. " (dial " .. dials .. " of " .. dials_allowed .. ")"
  redis.call("ZREM", retries_key(), message_id)
end
-- provider_id stays the agent's call (the sender records it); a report on the
-- customer's leg carries that leg's own CallSid
redis.call("HSET", k, "status", outcome, "error", err, "settled", attempt, "updated_at", NOW_S)
if conv then
  redis.call("HSET", conv, "callback_attempts", S(dials), "callback_last_status", status)
  if outcome ~= "retry" then redis.call("HSET", conv, "callback_outcome", outcome) end
end
emit({type = "delivery", channel = "voice", direction = "out", provider_id = f[5] or sid,
  conversation = f[3] or "", message = message_id, status = outcome, error = err, attempt = tonumber(attempt)})
return {"updated", outcome}
