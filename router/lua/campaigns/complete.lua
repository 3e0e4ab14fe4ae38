-- Finish a running campaign that has nothing left to do: nobody due (nor claimed: a claim
-- is a due score), and none of its messages still at the dispatcher (queued, or in its
-- backoff). Atomic with the scripts that give a recipient back (outcome.lua's retry, which
-- opens a campaign finished this way again; begin_send.lua's hand-back, which only a
-- pending message can make), so a recipient coming back is never left behind.
-- ARGV: the campaign's hash, its due set, its pending messages, the running campaigns, its id.
-- Returns 1 when it finished now, else 0.
local campaign_key, due, pending, running, campaign = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call("HGET", campaign_key, "state") ~= "running" then return 0 end
if redis.call("ZCARD", due) > 0 or redis.call("SCARD", pending) > 0 then return 0 end
redis.call("HSET", campaign_key, "state", "finished", "finished_at", NOW_S, "ended", "completed")
redis.call("SREM", running, campaign)
return 1
