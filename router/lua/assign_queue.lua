-- Offer a queue's waiting conversations, best first, to ready agents. Each
-- offer is a reservation taken inside this one script, so any number of
-- routing workers may run it at once without double-booking.
-- ARGV: queue, how many waiting conversations to look at.
local queue, limit = ARGV[1], tonumber(ARGV[2])
local q = queue_conf(queue)
if not q then return {} end
-- The best usable waiting conversations of each channel that has a ready
-- agent, in one order: priority, then age.
local heads = {}
for _, ch in ipairs(CHANNELS) do
  if redis.call("ZCARD", B .. ":ready:" .. ch) > 0 then waiting_heads(queue, ch, limit, nil, heads) end
end
if #heads == 0 then return {} end
table.sort(heads, function(x, y) return x.score < y.score end)
local timeout_ms = (q.reservation_timeout or 30) * 1000
local exhausted = {}  -- channel:level pairs that no ready agent serves at all
local made = {}

-- The agent to offer a conversation to, and whether any ready agent belongs
-- to the queue at this level (if none does, no later conversation of the same
-- channel and level can be placed in this call either: offers only remove
-- agents from the ready sets).
local RANKED = {least_occupied = true, round_robin = true, proficiency = true}

local function pick(conv, channel, level, holder)
  local members = B .. ":q:" .. queue .. ":m:" .. level
  local ready = B .. ":ready:" .. channel
  if holder then
    -- held for one agent (sticky): only they may take it, when they are ready
    if redis.call("ZSCORE", ready, holder) and redis.call("ZSCORE", members, holder) then return holder, true end
    return nil, true
  end
  local ranked = RANKED[q.strategy]
  local any_member, best, best_value = false, nil, nil
  local offset = 0
  while true do
    -- the ready set is ordered by idle time: longest idle reads only until the
    -- first eligible agent, a page at a time
    local page = redis.call("ZRANGE", ready, offset, offset + 15)
    if #page == 0 then break end
    for _, agent in ipairs(page) do
      if redis.call("ZSCORE", members, agent) then
        any_member = true
        if not declined_recently(conv, agent) then
          if not ranked then return agent, true end
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
      end
    end
    offset = offset + 16
  end
  return best, any_member
end

for i = 1, math.min(#heads, limit) do
  -- a conversation's fields cannot change within this call before its own turn
  local conv, holder, channel, level = heads[i].conv, heads[i].holder, heads[i].channel, heads[i].level
  if channel and heads[i].state == "queued" and not exhausted[channel .. ":" .. level] then
    local agent, any_member = pick(conv, channel, level, holder)
    if agent then
      reserve(conv, agent, queue, channel, timeout_ms)
      made[#made + 1] = agent
    elseif not any_member then
      exhausted[channel .. ":" .. level] = true
    end
  end
end
return made
