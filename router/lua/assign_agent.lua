-- An agent has free capacity: offer them the best waiting conversations of
-- all their queues (priority, then age), as long as their capacity lasts.
-- ARGV: agent, how many waiting conversations to look at per queue.
local agent, lookahead = ARGV[1], tonumber(ARGV[2])
local a = agent_key(agent)
if redis.call("HGET", a, "presence") ~= "available" then return 0 end
local candidates = {}
local open_channels = {}
for _, ch in ipairs(CHANNELS) do
  if redis.call("ZSCORE", ready_key(ch), agent) then open_channels[#open_channels + 1] = ch end
end
for _, queue in ipairs(redis.call("SMEMBERS", agent_queues_key(agent))) do
  for _, ch in ipairs(open_channels) do waiting_heads(queue, ch, lookahead, agent, candidates) end
end
table.sort(candidates, function(x, y) return x.score < y.score end)
local made = 0
for _, cand in ipairs(candidates) do
  -- the heads were usable when read; the ready check sees this call's own offers
  local channel = cand.channel
  if channel and cand.state == "queued" and redis.call("ZSCORE", ready_key(channel), agent) then
    local q = queue_conf(cand.queue) or {}
    reserve(cand.conv, agent, cand.queue, channel, (q.reservation_timeout or 30) * 1000)
    made = made + 1
    if tonumber(redis.call("HGET", a, "load:total") or 0) >= tonumber(redis.call("HGET", a, "cap:total") or 0) then
      break
    end
  end
end
return made
