-- Give back tokens take_tokens.lua granted and a batch did not use, up to each bucket's
-- burst (take_tokens.lua's argument shape, so one list serves both).
-- ARGV: how many, then per bucket: key, per minute, burst.
local count = tonumber(ARGV[1])
for at = 2, #ARGV, 3 do
  local key, burst = ARGV[at], tonumber(ARGV[at + 2])
  local tokens = tonumber(redis.call("HGET", key, "tokens") or burst)
  redis.call("HSET", key, "tokens", tostring(math.min(burst, tokens + count)))
end
return 1
