-- Close a conversation with a disposition. The agent's slot is kept through
-- wrap-up (a timer gives it back) or given back at once without wrap-up.
-- ARGV: conversation, agent ("" for a supervisor/system close), disposition, wrap-up ms,
-- and optionally "unanswered": close only if nobody has taken it yet (a caller hung
-- up, a callback replaced the call), checked here so an accept racing it wins;
-- then optionally when to ask the customer to rate it (ms, router/surveys.py): its timer is
-- set in the same step as the close, so no crash between the two loses the survey.
local conv, by, disposition, wrapup_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local only_unanswered, survey_due = ARGV[5] == "unanswered", ARGV[6] or ""
local c = conversation_key(conv)
local f = redis.call("HMGET", c, "state", "agent", "queue", "channel", "reservation", "customer")
local state, agent, queue, channel, res, customer = f[1], f[2] or "", f[3], f[4], f[5] or "", f[6]
if not state then return {"unknown", ""} end
if state == "closed" then return {"already_closed", agent} end
if only_unanswered and state ~= "queued" and state ~= "reserved" then return {"taken", agent} end
if by ~= "" and by ~= agent then return {"not_yours", agent} end
unwait(queue, conv, channel)
redis.call("HSET", c, "state", "closed", "closed_at", NOW_S, "disposition", disposition)
if customer and redis.call("HGET", customer_key(customer), "open_conv") == conv then
  redis.call("HDEL", customer_key(customer), "open_conv")
end
local freed = ""
if agent ~= "" then
  if state == "reserved" then
    redis.call("HSET", reservation_key(res), "state", "cancelled", "agent", agent, "answered_at", NOW_S)
    redis.call("ZREM", timers_key(), "res:" .. res)
    release_slot(agent, conv, channel)
    freed = agent
  elseif wrapup_ms > 0 then
    redis.call("ZADD", timers_key(), S(NOW + wrapup_ms), "wrap:" .. agent .. ":" .. conv)
  else
    release_slot(agent, conv, channel)
    freed = agent
  end
end
if survey_due ~= "" then redis.call("ZADD", timers_key(), "NX", survey_due, "survey:" .. conv) end
emit({type = "closed", conversation = conv, channel = channel or "", agent = agent, disposition = disposition})
if freed ~= "" and state ~= "reserved" then
  emit({type = "wrapped_up", conversation = conv, channel = channel or "", agent = agent})
end
return {"closed", freed}
