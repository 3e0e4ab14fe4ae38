-- Add an event to a stream once per provider id: the check and the append
-- are one step, so a retried webhook racing the first one adds nothing.
-- KEYS: the provider id's marker (Keys.seen), the stream. ARGV: payload, ttl seconds.
-- Runs on every webhook, so it stands alone: lib.lua is not prepended, and the
-- marker's key comes made (a concatenation here costs more than an argument).
local payload, ttl_s = ARGV[1], ARGV[2]
local existing = redis.call("GET", KEYS[1])
if existing then return {0, existing} end
local id = redis.call("XADD", KEYS[2], "*", "e", payload)
redis.call("SET", KEYS[1], id, "EX", ttl_s)  -- as text: a Lua number would be formatted back
return {1, id}
