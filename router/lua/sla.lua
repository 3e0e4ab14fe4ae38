-- The service-level target of a conversation comes due: if nobody has
-- answered it yet, record the breach and, when the queue says so, move it to
-- its second-line queue.
-- ARGV: conversation.
local conv = ARGV[1]
redis.call("ZREM", timers_key(), "sla:" .. conv)
local c = conversation_key(conv)
local f = redis.call("HMGET", c, "state", "queue", "answered_at", "enqueued_at", "channel", "first_response_at")
local state, queue = f[1], f[2]
local q = queue_conf(queue) or {}
local met = f[3]
if q.sla_measure == "first_response" then met = f[6] end
if met or not state or state == "closed" then return {"met", ""} end
redis.call("HSET", c, "sla_breached", "1")
emit({type = "sla_breached", conversation = conv, channel = f[5], queue = queue,
  target_s = q.sla_seconds or 0, waited_ms = NOW - tonumber(f[4] or NOW)})
if state == "queued" and q.breach_queue and q.breach_queue ~= "" and q.breach_queue ~= queue then
  unwait(queue, conv, f[5])
  enqueue(conv, q.breach_queue, 0)
  emit({type = "escalated", conversation = conv, channel = f[5], queue = queue, step = -1,
    action = "overflow", to_queue = q.breach_queue, priority = 0})
  return {"breached", q.breach_queue}
end
return {"breached", ""}
