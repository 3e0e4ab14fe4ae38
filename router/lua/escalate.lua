-- An escalation step of a waiting conversation comes due: raise its
-- priority, widen its targets (the next member level), or overflow it to
-- another queue. Steps apply only while it still waits in the same queue.
-- ARGV: conversation, step index (0-based).
local conv, step = ARGV[1], tonumber(ARGV[2])
redis.call("ZREM", timers_key(), "esc:" .. conv .. ":" .. S(step))
local c = conversation_key(conv)
local f = redis.call("HMGET", c, "state", "queue", "priority", "enqueued_at", "level", "channel", "overflows")
local state, queue = f[1], f[2]
if state == "reserved" then
  -- on offer right now: look again shortly, in case the offer is declined
  redis.call("ZADD", timers_key(), S(NOW + 5000), "esc:" .. conv .. ":" .. S(step))
  return {"skipped", ""}
end
if state ~= "queued" then return {"skipped", ""} end
local q = queue_conf(queue)
local s = q and q.escalation and q.escalation[step + 1]
if not s then return {"skipped", ""} end
local level = math.max(tonumber(f[5] or 0), step + 1)
local priority = math.min(tonumber(f[3] or 0) + (s.priority or 0), 800)
redis.call("HSET", c, "priority", S(priority), "level", S(level))
local target = queue
local action = "priority"
if s.widen and s.widen ~= "" then action = "widen" end
if s.overflow and s.overflow ~= "" and tonumber(f[7] or 0) < 5 then
  action = "overflow"
  target = s.overflow
  unwait(queue, conv, f[6])
  redis.call("HINCRBY", c, "overflows", 1)
  enqueue(conv, target, 0)
  schedule_queue_timers(conv, target, tonumber(f[4]))
else
  enqueue(conv, queue, level)
end
emit({type = "escalated", conversation = conv, channel = f[6], queue = queue, step = step,
  action = action, to_queue = target ~= queue and target or "", priority = priority})
return {action, target}
