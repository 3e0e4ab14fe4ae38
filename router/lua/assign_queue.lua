-- Offer a queue's waiting conversations, best first, to ready agents. Each
-- offer is a reservation taken inside this one script, so any number of
-- routing workers may run it at once without double-booking.
-- ARGV: queue, how many waiting conversations to look at.
local queue, limit = ARGV[1], tonumber(ARGV[2])
-- Most rounds find nothing waiting (intake offers a conversation at once when it can).
if redis.call("ZCARD", B .. ":q:" .. queue .. ":wait") == 0 then return {} end
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

for i = 1, math.min(#heads, limit) do
  -- a conversation's fields cannot change within this call before its own turn
  local conv, holder, channel, level = heads[i].conv, heads[i].holder, heads[i].channel, heads[i].level
  if channel and heads[i].state == "queued" and not exhausted[channel .. ":" .. level] then
    local agent, any_member = pick(q, queue, conv, channel, level, holder)
    if agent then
      reserve(conv, agent, queue, channel, timeout_ms, heads[i].attempts)
      made[#made + 1] = agent
    elseif not any_member then
      exhausted[channel .. ":" .. level] = true
    end
  end
end
return made
