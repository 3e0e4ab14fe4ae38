-- A delivery outcome of one attempt: counted once, and a failure schedules the next
-- attempt (on the fallback channel) when the policy allows one.
-- A campaign that finished with nobody left to send to (complete.lua) is running again for
-- the retry.
-- ARGV: status key, due key, stats key, seq, attempt, outcome (delivered | failed | suppressed),
-- next channel ("" for no further attempt), due ms, reason, the A/B variant's counter prefix or "",
-- the campaign's hash, the running campaigns, the campaign's id.
-- Returns 1 when counted, 0 when the attempt is not the recipient's current one.
local status, due, stats, seq, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local outcome, next_channel, due_ms, reason, variant = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local campaign_key, running, campaign = ARGV[11], ARGV[12], ARGV[13]
local st = redis.call("HGET", status, seq)
if not st then return 0 end
local state, n, channel = string.match(st, "^(%a+):(%d+):(%a+)")
if state ~= "sent" or n ~= attempt then return 0 end
local counter
if outcome == "delivered" then
  redis.call("HSET", status, seq, "delivered:" .. n .. ":" .. channel)
  counter = "delivered"
elseif next_channel ~= "" then
  redis.call("HSET", status, seq, "retry:" .. S(tonumber(n) + 1) .. ":" .. next_channel)
  redis.call("ZADD", due, due_ms, seq)
  counter = "retried"
  local f = redis.call("HMGET", campaign_key, "state", "ended")
  if f[1] == "finished" and f[2] == "completed" then
    redis.call("HSET", campaign_key, "state", "running")
    redis.call("HDEL", campaign_key, "ended")
    redis.call("SADD", running, campaign)
  end
elseif outcome == "suppressed" then
  -- never left (refused by our own rule at dispatch): suppressed instead of sent, so the
  -- recipient counts once in the progress bar's done (sent - retried + suppressed + skipped)
  redis.call("HSET", status, seq, "suppressed:refused:" .. n .. ":" .. channel .. ":" .. reason)
  counter = "suppressed"
  redis.call("HINCRBY", stats, "sent", -1)
  if variant ~= "" then redis.call("HINCRBY", stats, variant .. "sent", -1) end
else
  redis.call("HSET", status, seq, "failed:" .. n .. ":" .. channel .. ":" .. reason)
  counter = "failed"
end
redis.call("HINCRBY", stats, counter, 1)
if variant ~= "" then redis.call("HINCRBY", stats, variant .. counter, 1) end
return 1
