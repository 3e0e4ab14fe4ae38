-- An agent has free capacity: offer them the best waiting conversations of
-- all their queues (priority, then age), as long as their capacity lasts.
-- ARGV: agent, how many waiting conversations to look at per queue.
local agent, limit = ARGV[1], tonumber(ARGV[2])
local a = B .. ":agent:" .. agent
if redis.call("HGET", a, "presence") ~= "available" then return 0 end
local candidates = {}
local open_channels = {}
for _, ch in ipairs(CHANNELS) do
  if redis.call("ZSCORE", B .. ":ready:" .. ch, agent) then open_channels[#open_channels + 1] = ch end
end
for _, queue in ipairs(redis.call("SMEMBERS", a .. ":queues")) do
  for _, ch in ipairs(open_channels) do
    local head = redis.call("ZRANGE", B .. ":q:" .. queue .. ":wait:" .. ch, 0, limit - 1, "WITHSCORES")
    for i = 1, #head, 2 do
      candidates[#candidates + 1] = {conv = head[i], score = tonumber(head[i + 1]), queue = queue}
    end
  end
end
table.sort(candidates, function(x, y) return x.score < y.score end)
local made = 0
for _, cand in ipairs(candidates) do
  local f = redis.call("HMGET", B .. ":conv:" .. cand.conv, "channel", "level", "sticky_agent", "sticky_until", "state")
  local channel, level = f[1], f[2] or "0"
  local sticky = f[3] or ""
  local held_for_other = sticky ~= "" and sticky ~= agent and NOW < tonumber(f[4] or 0)
  if channel and f[5] == "queued" and not held_for_other
    and redis.call("ZSCORE", B .. ":ready:" .. channel, agent)
    and redis.call("ZSCORE", B .. ":q:" .. cand.queue .. ":m:" .. level, agent)
    and not declined_recently(cand.conv, agent) then
    local q = queue_conf(cand.queue) or {}
    reserve(cand.conv, agent, cand.queue, channel, (q.reservation_timeout or 30) * 1000)
    made = made + 1
    if tonumber(redis.call("HGET", a, "load:total") or 0) >= tonumber(redis.call("HGET", a, "cap:total") or 0) then
      break
    end
  end
end
return made
