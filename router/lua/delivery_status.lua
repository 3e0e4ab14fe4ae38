-- A provider's report on a message we sent, for any channel that reports by a
-- reference we recorded (`provider:<ref>` -> our message id): an SMS status
-- callback, an email bounce or DSN, a fax gateway's confirmation or failure mail,
-- a campaign call's status. Atomic: the lookup by
-- reference, the order check, the update and its event are one step, so two
-- reports racing each other (a retried SMTP delivery, a late confirmation after
-- a failure) can never move a status back or count twice.
-- ARGV: reference, channel, status, error, then (status, rank) pairs: the order.
local ref, channel, status, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rank = {}
for i = 5, #ARGV, 2 do rank[ARGV[i]] = tonumber(ARGV[i + 1]) end
local id = redis.call("GET", provider_message_key(ref))
if not id then return {"unknown", ""} end
local k = delivery_key(id)
local f = redis.call("HMGET", k, "status", "attempts", "conversation")
local current = f[1] or ""
if (rank[current] or 0) >= rank[status] then return {"unchanged", current} end
-- the reference is the provider's id for the message (a report may overtake the
-- sender's own record of it)
redis.call("HSET", k, "status", status, "error", err, "provider_id", ref, "updated_at", NOW_S)
-- settled: a report that overtook the dispatcher's own record of the send (or a
-- retry it scheduled) leaves the retry schedule, so it is never sent again
redis.call("ZREM", retries_key(), id)
emit({type = "delivery", channel = channel, direction = "out", provider_id = ref,
  conversation = f[3] or "", message = id, status = status, error = err,
  attempt = tonumber(f[2] or 0)})
return {"updated", status}
