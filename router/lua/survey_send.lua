-- Ask a closed conversation's customer to rate it, at most once. Whether it goes and its
-- going are one step: the conversation's `survey` field is the decision (set here, whatever
-- it is), so a timers worker that died after this call, or a second one that claimed the
-- timer after the lease, finds it decided and sends nothing twice. Judged here, at the
-- instant the message is queued: the customer has not written again meanwhile (a new
-- conversation is open), nothing of lib.lua's contact_refusal stands in the way (the
-- campaigns' rule: the person's opt-outs and do-not-contact entries under the tenant's
-- opt_out_scope, a revocation awaiting an agent), and the survey caps of the channel allow
-- another (counted, like campaign caps, by address under the kind "survey").
-- A survey that goes is, in the same step: the message on the outbound stream and in the
-- history, the customer's pending survey, the cap attempt, the day's "sent" figures of the
-- queue and the agent, and a survey_sent event. The timer is removed in every case.
-- ARGV: conversation, channel, address, ident (the address as an identity), scope (the
-- tenant's opt_out_scope), outbound (MessagePack; the message's id is message), history
-- entry, message, day (the local date the figures count on), day key, outbound stream key,
-- cap attempts key ("" for none), caps ("max:window_ms" joined by ","), cap ttl (ms),
-- answer_until (ms: an answer counts until then), asked ("close": after the close, by the
-- timers worker; "call": the voice keypad survey, while the caller is still on the line
-- after the agent hung up: the conversation need not be closed yet, no message is queued
-- (the question is the call's own TwiML) and no pending survey is set on the customer, so a
-- text "4" from them is never taken as the answer to a question asked on a call).
-- Returns the outcome: sent | opted_out | do_not_contact | revocation_pending | capped |
-- wrote_again | decided:<state> | unknown.
local conv, channel, address, ident, scope = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local outbound, entry, message, day, day_key = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local outbound_stream, cap, caps, cap_ttl, answer_until = ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15]
local asked = ARGV[16]
local on_call = asked == "call"
local c = conversation_key(conv)
redis.call("ZREM", timers_key(), "survey:" .. conv)
local f = redis.call("HMGET", c, "state", "survey", "customer", "queue", "agent")
local state, decided, customer, queue, agent = f[1], f[2], f[3], f[4] or "", f[5] or ""
if not state then return "unknown" end
if decided then return "decided:" .. decided end

local function decide(outcome, sent_message)
  redis.call("HSET", c, "survey", outcome, "survey_day", day, "survey_channel", channel)
  emit({type = "survey_sent", conversation = conv, channel = channel, outcome = outcome, queue = queue,
    agent = agent, message = sent_message or ""})
  return outcome
end

if state ~= "closed" and not on_call then return decide("reopened") end
local open = customer and redis.call("HGET", customer_key(customer), "open_conv")
if open and open ~= "" and open ~= conv then return decide("wrote_again") end
local refusal = contact_refusal(scope, channel, {ident}, "", "")
if refusal then return decide(refusal) end
if cap ~= "" then
  for max, window in string.gmatch(caps, "(%d+):(%d+)") do
    if redis.call("ZCOUNT", cap, S(NOW - tonumber(window)), "+inf") >= tonumber(max) then return decide("capped") end
  end
  redis.call("ZADD", cap, NOW_S, message)
  -- only ever lengthened: a longer cap of the same key must not lose what it counts
  if redis.call("PTTL", cap) < tonumber(cap_ttl) then redis.call("PEXPIRE", cap, cap_ttl) end
end
redis.call("HSET", c, "survey_message", message, "survey_sent_at", NOW_S, "survey_until", answer_until,
  "survey_address", address)
if customer and not on_call then redis.call("HSET", customer_key(customer), "survey", conv) end
redis.call("RPUSH", conversation_log_key(conv), entry)
if not on_call then redis.call("XADD", outbound_stream, "*", "e", outbound) end
if queue ~= "" then redis.call("HINCRBY", day_key, "q:" .. queue .. ":sent", 1) end
if agent ~= "" then redis.call("HINCRBY", day_key, "a:" .. agent .. ":sent", 1) end
return decide("sent", message)
