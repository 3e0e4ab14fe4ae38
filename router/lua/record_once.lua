-- Add an entry to a conversation's history once, and for a reply also queue it
-- for delivery: the marker check, the marker and the writes it guards are one
-- step (ingest.lua's pattern). So a command the client sent again after its
-- answer was lost, or a resubmitted form with the same key, adds nothing more
-- and gets the first run's value back; one round trip, no WATCH.
-- KEYS: base, marker, history log, conversation, outbound stream, events stream.
-- ARGV: marker value, marker ttl seconds, history entry, reply time in ms ("" for
-- a note: nothing to queue), outbound payload, MessageAdded payload.
-- Returns {1, value} if this run wrote, {0, first run's value} if it had run.
-- Runs on every reply, so it stands alone: lib.lua is not prepended.
local value, ttl_s, entry, reply_at, outbound, added = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local first = redis.call("GET", KEYS[2])
if first then return {0, first} end
redis.call("SET", KEYS[2], value, "EX", tonumber(ttl_s))
redis.call("RPUSH", KEYS[3], entry)
if reply_at ~= "" then
  redis.call("HSET", KEYS[4], "last_reply_at", reply_at)
  redis.call("HSETNX", KEYS[4], "first_response_at", reply_at)
  redis.call("XADD", KEYS[5], "*", "e", outbound)
  redis.call("XADD", KEYS[6], "*", "e", added)
end
return {1, value}
