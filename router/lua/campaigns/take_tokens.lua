-- Token buckets shared by every campaigns worker of a tenant: take up to `want` tokens
-- from every (key, per minute, burst) bucket that follows, the same number from each,
-- refilled by the time passed. Atomic, so two workers never spend one token twice.
-- ARGV: want, then per bucket: key, per minute, burst.
-- Returns {granted, ms until a token when none was granted}.
local want = tonumber(ARGV[1])
local grant, wait = want, 0
local buckets = {}
for at = 2, #ARGV, 3 do
  local key, rate, burst = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local f = redis.call("HMGET", key, "tokens", "at")
  local tokens = tonumber(f[1] or burst)
  local since = tonumber(f[2] or NOW)
  tokens = math.min(burst, tokens + math.max(0, NOW - since) * rate / 60000)
  buckets[#buckets + 1] = {key, tokens}
  if tokens < grant then grant = math.floor(tokens) end
  if tokens < 1 then wait = math.max(wait, math.ceil((1 - tokens) * 60000 / rate)) end
end
if grant < 0 then grant = 0 end
for _, b in ipairs(buckets) do
  redis.call("HSET", b[1], "tokens", tostring(b[2] - grant), "at", S(NOW))
  redis.call("PEXPIRE", b[1], 86400000)
end
return {grant, wait}
