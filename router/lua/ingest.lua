-- Add an event to a stream once per provider id: the check and the append
-- are one step, so a retried webhook racing the first one adds nothing.
-- KEYS: base, stream. ARGV: provider id scope:id, payload, ttl seconds.
-- Runs on every webhook, so it stands alone: lib.lua is not prepended.
local seen = KEYS[1] .. ":seen:" .. ARGV[1]
local existing = redis.call("GET", seen)
if existing then return {0, existing} end
local id = redis.call("XADD", KEYS[2], "*", "e", ARGV[2])
redis.call("SET", seen, id, "EX", ARGV[3])  -- as text: a Lua number would be formatted back
return {1, id}
