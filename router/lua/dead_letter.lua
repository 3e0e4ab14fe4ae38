-- Move a stream entry a consumer gives up on to the shard's dead-letter
-- stream: acknowledge it and, only if it was still pending, keep a copy there,
-- as one step. An entry that another worker finished (and acknowledged) in the
-- meantime is left alone: replayed from the dead letters, its contact would be
-- stored a second time.
-- KEYS: the entry's stream, the dead-letter stream. ARGV: group, entry id, then
-- the dead-letter entry's fields and values.
-- Returns the dead-letter entry's id, or "" when the entry was no longer pending.
-- Stands alone: lib.lua is not prepended.
local group, entry_id = ARGV[1], ARGV[2]
if redis.call("XACK", KEYS[1], group, entry_id) == 0 then return "" end
return redis.call("XADD", KEYS[2], "*", unpack(ARGV, 3))
