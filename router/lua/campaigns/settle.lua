-- Settle claimed recipients without sending, each unless it was sent meanwhile (a worker
-- whose lease ran out must not undo another's send); one due for a retry, or held (handed
-- back by the dispatcher), was not. A batch's recipients in one call:
-- each one's check and write are atomic together, as they must be; one call saves a
-- script run per recipient.
-- ARGV: status key, due key, stats key, then per recipient: seq, action (later | final),
-- due ms (later) or status (final), counter to add 1 to ("" for none).
-- Returns how many were settled (the others had been sent).
local status, due, stats = ARGV[1], ARGV[2], ARGV[3]
local settled = 0
for at = 3, #ARGV - 1, 4 do  -- (workers/campaigns/scripts.py Settlement)
  local seq, action, value, counter = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local st = redis.call("HGET", status, seq)
  if st and string.sub(st, 1, 6) ~= "retry:" and string.sub(st, 1, 5) ~= "held:" then
    redis.call("ZREM", due, seq)
  else
    if action == "later" then
      redis.call("ZADD", due, value, seq)
    else
      redis.call("HSET", status, seq, value)
      redis.call("ZREM", due, seq)
    end
    if counter ~= "" then redis.call("HINCRBY", stats, counter, 1) end
    settled = settled + 1
  end
end
return settled
