-- Set an agent's presence; routing sees the change at once.
-- ARGV: agent, presence ("" keeps it: only readiness is recomputed), reason.
local agent, presence, reason = ARGV[1], ARGV[2], ARGV[3]
local a = agent_key(agent)
local before = redis.call("HGET", a, "presence")
if not before then return "unknown" end
if presence == "" then
  -- A process applying the configuration: reading the presence and writing it
  -- back from Python would undo a change the agent made in between.
  refresh_ready(agent)
  return before
end
redis.call("HSET", a, "presence", presence, "reason", reason)
if presence == "available" then
  redis.call("HSET", a, "missed", "0")
  if before ~= "available" and tonumber(redis.call("HGET", a, "load:total") or 0) == 0 then
    redis.call("HSET", a, "idle_since", NOW_S)
  end
end
refresh_ready(agent)
if before ~= presence then
  emit({type = "presence", agent = agent, presence = presence, reason = reason})
end
return before
