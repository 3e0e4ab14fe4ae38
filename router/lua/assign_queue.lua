-- Offer a queue's waiting conversations, best first, to ready agents. Each
-- offer is a reservation taken inside this one script, so any number of
-- routing workers may run it at once without double-booking.
-- ARGV: queue, how many waiting conversations to look at.
local queue, limit = ARGV[1], tonumber(ARGV[2])
local q = queue_conf(queue)
if not q then return {} end
-- The best waiting conversations of each channel that has a ready agent, in
-- one order: priority, then age.
local heads = {}
for _, ch in ipairs(CHANNELS) do
  if redis.call("ZCARD", B .. ":ready:" .. ch) > 0 then
    local head = redis.call("ZRANGE", B .. ":q:" .. queue .. ":wait:" .. ch, 0, limit - 1, "WITHSCORES")
    for i = 1, #head, 2 do heads[#heads + 1] = {conv = head[i], score = tonumber(head[i + 1])} end
  end
end
if #heads == 0 then return {} end
table.sort(heads, function(x, y) return x.score < y.score end)
local waiting = {}
for i = 1, math.min(#heads, limit) do waiting[i] = heads[i].conv end
local timeout_ms = (q.reservation_timeout or 30) * 1000
local exhausted = {}  -- channel:level pairs that no ready agent serves at all
local made = {}

-- The agent to offer a conversation to, and whether any ready agent belongs
-- to the queue at this level (if none does, no later conversation of the same
-- channel and level can be placed in this call either: offers only remove
-- agents from the ready sets).
local function pick(conv, channel, level, sticky_agent, sticky_until)
  local members = B .. ":q:" .. queue .. ":m:" .. level
  local ready = redis.call("ZRANGE", B .. ":ready:" .. channel, 0, -1)
  local any_member = false
  local candidates = {}
  for _, agent in ipairs(ready) do
    if redis.call("ZSCORE", members, agent) then
      any_member = true
      if not declined_recently(conv, agent) then candidates[#candidates + 1] = agent end
    end
  end
  if sticky_agent ~= "" and NOW < sticky_until then
    for _, agent in ipairs(candidates) do
      if agent == sticky_agent then return agent, any_member end
    end
    local presence = redis.call("HGET", B .. ":agent:" .. sticky_agent, "presence")
    if presence == "available" or presence == "busy" then return nil, any_member end  -- wait for them
  end
  if q.strategy ~= "least_occupied" and q.strategy ~= "round_robin" and q.strategy ~= "proficiency" then
    return candidates[1], any_member  -- longest idle: the ready set is already in that order
  end
  local best, best_value = nil, nil
  for _, agent in ipairs(candidates) do
    local value
    if q.strategy == "least_occupied" then
      local f = redis.call("HMGET", B .. ":agent:" .. agent, "load:total", "cap:total")
      value = tonumber(f[1] or 0) / math.max(tonumber(f[2] or 1), 1)
    elseif q.strategy == "round_robin" then
      value = tonumber(redis.call("HGET", B .. ":agent:" .. agent, "last_offer") or 0)
    else
      value = -tonumber(redis.call("ZSCORE", members, agent))
    end
    if best == nil or value < best_value then best, best_value = agent, value end
  end
  return best, any_member
end

for _, conv in ipairs(waiting) do
  local f = redis.call("HMGET", B .. ":conv:" .. conv, "channel", "level", "sticky_agent", "sticky_until")
  local channel, level = f[1], f[2] or "0"
  if channel and not exhausted[channel .. ":" .. level] then
    local agent, any_member = pick(conv, channel, level, f[3] or "", tonumber(f[4] or 0))
    if agent then
      reserve(conv, agent, queue, channel, timeout_ms)
      made[#made + 1] = agent
    elseif not any_member then
      exhausted[channel .. ":" .. level] = true
    end
  end
end
return made
