-- One step of a campaign conversation for its agent's figures, counted once per event:
-- an accept is a connect and starts the talk time; a close ends it, counts a right-party
-- contact (any disposition but a wrong number) and a promise to pay with its amount, and
-- starts the wrap-up; the end of wrap-up ends that. The marker and the counts are one
-- step, so the results follower reading an event twice counts nothing twice.
-- ARGV: figures key, marker key, marker ttl ms, kind ("accepted", "closed" or
-- "wrapped_up"), agent, conversation, at (ms), disposition, promised cents.
-- Returns 1 when counted, 0 when the event was counted already.
local figures, marker, ttl, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local agent, conv, at, disposition, cents = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
if not redis.call("SET", marker, "1", "NX", "PX", ttl) then return 0 end
local mine = agent .. ":"
if kind == "accepted" then
  redis.call("HINCRBY", figures, mine .. "connects", 1)
  redis.call("HSET", figures, "start:" .. conv, at)
  redis.call("HDEL", figures, "closed:" .. conv)  -- a close without wrap-up ends nothing more
elseif kind == "closed" then
  local start = tonumber(redis.call("HGET", figures, "start:" .. conv) or "")
  if start then
    redis.call("HINCRBY", figures, mine .. "talk_ms", math.max(0, at - start))
    redis.call("HDEL", figures, "start:" .. conv)
  end
  redis.call("HSET", figures, "closed:" .. conv, at)
  if disposition ~= "" and disposition ~= "wrong_number" then
    redis.call("HINCRBY", figures, mine .. "right_party", 1)
  end
  if disposition == "promise_to_pay" then
    redis.call("HINCRBY", figures, mine .. "promises", 1)
    redis.call("HINCRBY", figures, mine .. "promised_cents", cents)
  end
elseif kind == "wrapped_up" then
  local closed = tonumber(redis.call("HGET", figures, "closed:" .. conv) or "")
  if closed then
    redis.call("HINCRBY", figures, mine .. "wrap_ms", math.max(0, at - closed))
    redis.call("HDEL", figures, "closed:" .. conv)
  end
end
return 1
