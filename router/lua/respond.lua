-- An agent's answer to an offer (accept or reject), or the reservation timer
-- running out (timeout). Only a pending reservation can change, so a late
-- accept after a timeout, or a timer firing twice, has no effect.
-- ARGV: reservation, action, agent ("" for the timer), max missed offers.
-- Returns {state, queue, agent, the conversation's kind}: whoever accepts learns
-- here whether it is a callback to dial, with no read of its own.
local res, action, by, max_missed = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if action == "timeout" then redis.call("ZREM", timers_key(), "res:" .. res) end
local conv = string.match(res, "^(.+)%.%d+$")  -- a reservation's id: its conversation's, and a count
if not conv then return {"unknown", "", "", ""} end
local c = conversation_key(conv)
local f = redis.call("HMGET", c, "kind", "queue", "channel", "state", "agent", "reservation")
local kind, queue, channel = f[1] or "", f[2] or "", f[3] or ""
-- An offer that ended has a hash of its own saying how; a pending one is its
-- conversation's record (lib.lua's offer). (An offer made before that change has
-- its own hash while pending too, its state "pending".)
local r = redis.call("HMGET", reservation_key(res), "state", "agent")
local state, agent = r[1], r[2]
if not state then
  if f[6] ~= res or f[4] ~= "reserved" then return {"unknown", "", "", ""} end
  state, agent = "pending", f[5]
end
if by ~= "" and by ~= agent then return {"not_yours", queue, agent, ""} end
if state ~= "pending" then return {state, queue, agent, kind} end
local a = agent_key(agent)
redis.call("ZREM", timers_key(), "res:" .. res)

if action == "accept" then
  redis.call("HSET", reservation_key(res), "state", "accepted", "agent", agent, "answered_at", NOW_S)
  local enqueued_at = tonumber(redis.call("HGET", c, "enqueued_at") or NOW)
  redis.call("HSET", c, "state", "assigned", "accepted_at", NOW_S)
  redis.call("HSETNX", c, "answered_at", NOW_S)
  redis.call("HSET", a, "missed", "0")
  local customer = redis.call("HGET", c, "customer")
  if customer then
    redis.call("HSET", customer_key(customer), "last_agent", agent, "last_agent_at", NOW_S)
  end
  emit({type = "accepted", conversation = conv, channel = channel, reservation = res,
    agent = agent, queue = queue, waited_ms = NOW - enqueued_at})
  return {"accepted", queue, agent, kind}
end

-- reject or timeout: give the capacity back and put the conversation back in
-- its queue with its original age; this agent is skipped for a while.
state = action == "reject" and "rejected" or "timed_out"
redis.call("HSET", reservation_key(res), "state", state, "agent", agent, "answered_at", NOW_S)
release_slot(agent, conv, channel)
redis.call("ZADD", conversation_declined_key(conv), NOW_S, agent)
-- when the agents who declined may be offered it again, look once more
redis.call("ZADD", timers_key(), S(NOW + DECLINE_MS + 1), "route:" .. conv)
if redis.call("HGET", c, "state") == "reserved" then
  enqueue(conv, queue, tonumber(redis.call("HGET", c, "level") or 0))
end
if action == "reject" then
  emit({type = "rejected", conversation = conv, channel = channel, reservation = res, agent = agent, queue = queue})
else
  local missed = redis.call("HINCRBY", a, "missed", 1)
  emit({type = "timed_out", conversation = conv, channel = channel, reservation = res,
    agent = agent, queue = queue, missed = missed})
  if missed >= max_missed and redis.call("HGET", a, "presence") == "available" then
    redis.call("HSET", a, "presence", "away", "reason", "missed offers")
    refresh_ready(agent)
    emit({type = "presence", agent = agent, presence = "away", reason = "missed offers"})
  end
end
return {state, queue, agent, kind}
