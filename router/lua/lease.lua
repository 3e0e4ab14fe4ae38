-- Take a lease, or renew it when we hold it (the one `telegram` process polling a bot:
-- channels/telegram/polling.py). Atomic, so two processes never both believe they hold it.
-- KEYS: the lease. ARGV: owner, lease ms. Returns 1 if held.
-- Stands alone: lib.lua is not prepended.
local owner, lease_ms = ARGV[1], ARGV[2]
local current = redis.call("GET", KEYS[1])
if current and current ~= owner then return 0 end
redis.call("SET", KEYS[1], owner, "PX", lease_ms)
return 1
