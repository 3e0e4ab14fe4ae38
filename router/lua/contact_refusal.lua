-- Why nobody may send a campaign-like message (a survey, a campaign) to this address on
-- this channel now, judged by the same rule the campaigns apply when they queue a message
-- and when it leaves (lib.lua's contact_refusal); one read of the person's identities,
-- opt-outs, do-not-contact entries and pending revocations, consistent in one step.
-- KEYS[1]: the shard's base key. ARGV: scope ("person" | "channel"), channel, ident (the
-- address as an identity), other_ident (another identity of the same person, or "").
-- Returns the reason (opted_out, do_not_contact, revocation_pending), or false.
local scope, channel, ident, other_ident = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local reason = contact_refusal(scope, channel, {ident, other_ident}, "", "")
return reason or false
