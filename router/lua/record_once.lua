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
local first = redis.call("GET", KEYS[2])
if first then return {0, first} end
redis.call("SET", KEYS[2], ARGV[1], "EX", tonumber(ARGV[2]))
redis.call("RPUSH", KEYS[3], ARGV[3])
if ARGV[4] ~= "" then
  redis.call("HSET", KEYS[4], "last_reply_at", ARGV[4])
  redis.call("HSETNX", KEYS[4], "first_response_at", ARGV[4])
  redis.call("XADD", KEYS[5], "*", "e", ARGV[5])
  redis.call("XADD", KEYS[6], "*", "e", ARGV[6])
end
return {1, ARGV[1]}
