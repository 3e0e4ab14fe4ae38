-- Hand an assigned conversation to another agent (a direct offer) or to a
-- queue (it keeps its original age). The history goes with the conversation.
-- ARGV: conversation, from agent, to agent, to queue, note, reservation timeout ms.
local conv, by, to_agent, to_queue, note, timeout_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local c = conversation_key(conv)
local f = redis.call("HMGET", c, "state", "agent", "queue", "channel")
local state, agent, queue, channel = f[1], f[2], f[3], f[4]
if state ~= "assigned" then return {"not_assigned", ""} end
if by ~= "" and agent ~= by then return {"not_yours", ""} end
if to_agent ~= "" then
  local t = hgetall(agent_key(to_agent))
  if not t.presence then return {"unknown_agent", ""} end
  if t.presence ~= "available" or not redis.call("ZSCORE", ready_key(channel), to_agent) then
    return {"agent_unavailable", ""}
  end
else
  if not queue_conf(to_queue) then return {"unknown_queue", ""} end
end
release_slot(agent, conv, channel)
emit({type = "transferred", conversation = conv, channel = channel, agent = agent,
  to_agent = to_agent, to_queue = to_queue, note = note})
if to_agent ~= "" then
  redis.call("HSET", c, "state", "reserved")
  reserve(conv, to_agent, queue, channel, timeout_ms)
  return {"offered", queue}
end
-- whoever handed it over should not be offered it straight back, but may be
-- once the decline window has passed (if nobody else took it by then)
redis.call("ZADD", conversation_declined_key(conv), NOW_S, agent)
redis.call("ZADD", timers_key(), S(NOW + DECLINE_MS + 1), "route:" .. conv)
redis.call("HSET", c, "level", "0", "sticky_agent", "")
enqueue(conv, to_queue, 0)
schedule_queue_timers(conv, to_queue, tonumber(redis.call("HGET", c, "enqueued_at") or NOW))
return {"queued", to_queue}
