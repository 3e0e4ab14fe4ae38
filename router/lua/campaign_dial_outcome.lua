-- How an agent-paced campaign call came out, counted once per message: the call leaves
-- the ringing set and its outcome is added to the dialler's figures (calls that rang
-- out; people who answered, with the ring time; of those, connected to an agent or
-- abandoned, each also per day for the rolling 30-day abandon rate). The marker, the
-- removal and the counts are one step, so a retried webhook, or the status report after
-- the answer, counts nothing twice.
-- ARGV: figures key, ringing key, marker key, message id, outcome ("person", "machine" or
-- "none"), fate ("connected", "abandoned" or ""), ring ms, day (YYYY-MM-DD), marker ttl ms.
-- Returns 1 when counted, 0 when the message's outcome was counted already.
local figures, ringing, marker, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local outcome, fate, ring_ms, day, ttl = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9]
if not redis.call("SET", marker, outcome, "NX", "PX", ttl) then return 0 end
redis.call("ZREM", ringing, message)
redis.call("HINCRBY", figures, "outcomes", 1)
if outcome == "person" then
  redis.call("HINCRBY", figures, "answered", 1)
  redis.call("HINCRBY", figures, "ring_ms", ring_ms)
  redis.call("HINCRBY", figures, "answered:" .. day, 1)
  if fate == "abandoned" then
    redis.call("HINCRBY", figures, "abandoned", 1)
    redis.call("HINCRBY", figures, "abandoned:" .. day, 1)
  elseif fate == "connected" then
    redis.call("HINCRBY", figures, "connects", 1)
  end
elseif outcome == "machine" then
  redis.call("HINCRBY", figures, "machines", 1)
end
return 1
