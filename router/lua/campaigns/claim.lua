-- Claim due recipients for one worker. Each claimed recipient's score becomes the end
-- of its lease: no other worker takes it before then, and one whose worker died is
-- claimed again afterwards (campaigns/send.lua then makes a late duplicate a no-op).
-- ARGV: due key, audience key, status key, count, lease ms.
-- Returns {seqs, recipients, statuses, now} or, with nothing due, {{}, {}, {}, now, next due score}.
local due, audience, status, count, lease_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local seqs = redis.call("ZRANGEBYSCORE", due, "-inf", S(NOW), "LIMIT", 0, count)
if #seqs == 0 then
  local first = redis.call("ZRANGE", due, 0, 0, "WITHSCORES")
  return {{}, {}, {}, NOW, first[2] or "-1"}
end
local lease = S(NOW + lease_ms)
local pairs_ = {}
for _, seq in ipairs(seqs) do
  pairs_[#pairs_ + 1] = lease
  pairs_[#pairs_ + 1] = seq
end
redis.call("ZADD", due, unpack(pairs_))
local recipients = redis.call("HMGET", audience, unpack(seqs))
local states = redis.call("HMGET", status, unpack(seqs))
for i = 1, #states do if not states[i] then states[i] = "" end end
for i = 1, #recipients do if not recipients[i] then recipients[i] = "" end end
return {seqs, recipients, states, NOW}
