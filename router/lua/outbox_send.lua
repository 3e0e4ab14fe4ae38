-- The sandbox transport's send (channels/sandbox.py): keep a message once. The marker
-- and the outbox entry are written in one step, so a send the client replays after its
-- answer was lost (a dropped connection, Redis restarting) finds the marker and adds
-- nothing; one round trip per message, where a WATCH/GET/MULTI transaction took three.
-- KEYS: marker, outbox (one hash tag). ARGV: provider id, encoded message, marker ttl seconds.
-- Returns {1, entry id} when added, {0, ""} when already there (ingest.lua's shape).
-- Stands alone: lib.lua is not prepended.
local provider_id, message, ttl_s = ARGV[1], ARGV[2], ARGV[3]
if not redis.call("SET", KEYS[1], provider_id, "NX", "EX", ttl_s) then return {0, ""} end
return {1, redis.call("XADD", KEYS[2], "*", "e", message, "provider_id", provider_id)}
