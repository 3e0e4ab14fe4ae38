-- A simulated call (channels/voice/simulated.py: the softphone of a tenant without a
-- Twilio account) moves on, atomically: the check of its status and the change are one
-- step, so the agent answering while the ring runs out or the simulated customer hangs
-- up cannot both happen, and a repeated request (a double click, a retried command)
-- changes nothing twice.
-- KEYS: the call's record (Keys.call).
-- ARGV: action (answer | decline | expire | hangup | hold | resume | mute | unmute |
-- digits), by (who hangs up: agent | customer | transfer), value (the digits pressed).
-- Returns {outcome, status}: outcome "changed" or "unchanged"; status the call's after
-- (Twilio's words: ringing, in-progress, completed, busy, no-answer, canceled), "" when
-- there is no such call.
-- Stands alone: lib.lua is not prepended.
local action, by, value = ARGV[1], ARGV[2], ARGV[3]
local call = KEYS[1]
local f = redis.call("HMGET", call, "status", "answered_at", "ring_until", "digits")
local status = f[1]
if not status then return {"unchanged", ""} end
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function changed(...)
  redis.call("HSET", call, "updated_at", string.format("%d", now), ...)
  return {"changed", redis.call("HGET", call, "status")}
end

local function ended(new_status, who)
  local seconds = 0
  if f[2] then seconds = math.floor((now - tonumber(f[2])) / 1000 + 0.5) end
  return changed("status", new_status, "ended_at", string.format("%d", now), "hung_up_by", who,
    "duration_s", string.format("%d", seconds), "held", "0")
end

if status == "ringing" then
  if action == "answer" then
    return changed("status", "in-progress", "answered_at", string.format("%d", now))
  elseif action == "decline" or (action == "hangup" and by == "agent") then
    return ended("busy", "agent")
  elseif action == "hangup" then
    return ended("canceled", by)
  elseif action == "expire" and now >= tonumber(f[3] or "0") then
    return ended("no-answer", "")
  end
elseif status == "in-progress" then
  if action == "hangup" then
    return ended("completed", by)
  elseif action == "hold" or action == "resume" then
    return changed("held", action == "hold" and "1" or "0")
  elseif action == "mute" or action == "unmute" then
    return changed("muted", action == "mute" and "1" or "0")
  elseif action == "digits" then
    -- what the agent pressed, kept as the far end would hear it (bounded)
    return changed("digits", string.sub((f[4] or "") .. value, -64))
  end
end
return {"unchanged", status}
