-- Take a campaign message's send lease, as begin_send.lua does for every other message,
-- only if every rule of its campaign still allows it, judged in this same step on Redis's
-- clock. A message may wait in the outbound stream (a slow or stopped dispatcher, a
-- provider's backoff) while the world changes; it leaves only if, now: the campaign is
-- running; the person has not opted out nor gone on the do-not-contact list (on any of
-- their channels, unless the tenant's opt_out_scope is "channel"), has no free-text
-- revocation awaiting an agent, and no dispute of the debt or the customer is open
-- (lib.lua's contact_refusal, as at queue time); the frequency caps of its channel and the quiet period after a conversation
-- allow one more attempt (its own, recorded when it was queued, not counted; it is moved
-- to NOW if it goes); and NOW is inside the window span the dispatcher worked out in the
-- recipient's zones a moment before (workers/campaigns/gate.py), so a delay between
-- judging and leasing can only refuse, never widen the window. A refusal is recorded in
-- this step too:
-- - final (cancelled, ended, opted_out, do_not_contact, disputed): the delivery is
--   refused, the recipient suppressed:refused_at_send:<attempt>:<channel>:<reason>;
-- - for later (paused, cap, outside_window, revocation_pending): the delivery is held, and the recipient
--   handed back to its campaign (held:<attempt>:<channel>:<reason>), due again when the
--   window reopens, or at once (its number as its score: in file order) for the campaigns
--   worker to judge (caps), or to claim when the campaign runs again (a paused
--   campaign's recipients are not claimed);
-- either way the attempt is taken off the caps' history, the recipient's `sent` taken
-- back, and refused_at_send and refused_at_send:<reason> counted.
-- ARGV: the 24 of workers/campaigns/scripts.py SendCheck, then per cap on the message's
-- channel its 3 (CapArgs); tests/router/test_scripts.py holds both to the names below.
-- Returns {"go", attempt}, {"in_flight", attempt}, {"stale", attempt}, {"scheduled",
-- attempts}, {final status, attempts} (as begin_send.lua), or {"refused" | "held",
-- attempts, reason}.
local message_id, payload, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- the campaign's hash (its state), its recipients' statuses, due set and counters, its
-- messages not yet through the dispatcher
local campaign_key, status, due, stats, pending = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
-- the recipient, the attempt and where it goes; its conversation; the address as an identity
local seq, attempt, channel, address, conv, ident = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
-- the tenant's opt_out_scope ("person" or "channel"); the recipient's other identity ("" or,
-- say, their email when texted); the disputes set ("" unless collections), "debt:<account>" or ""
local scope, other_ident, disputes, debt = ARGV[15], ARGV[16], ARGV[17], ARGV[18]
-- the caps' attempts key, the key of the last conversation about the debt (or address)
local cap, talked = ARGV[19], ARGV[20]
-- the window span around the judging moment (ms; 0, 0 when it was outside), when the
-- window opens next, the A/B variant's counter prefix or ""
local open_from, open_until, reopens, variant = tonumber(ARGV[21]), tonumber(ARGV[22]), ARGV[23], ARGV[24]
local HEAD, PER_CAP = 24, 3

-- The delivery record, as begin_send.lua reads it.
local k = delivery_key(message_id)
local f = redis.call("HMGET", k, "status", "attempts", "sending_since")
local current, attempts = f[1], tonumber(f[2] or 0)
if current == "sending" then
  if NOW - tonumber(f[3] or 0) < lease_ms then return {"in_flight", attempts} end
  return {"stale", attempts}
end
if current and current ~= "retry" and current ~= "held" then
  redis.call("ZREM", retries_key(), message_id)
  return {current, attempts}
end
if current == "retry" then
  local due_at = redis.call("ZSCORE", retries_key(), message_id)
  if due_at and tonumber(due_at) > NOW then return {"scheduled", attempts} end
end

-- Whether a cap of the channel refuses one more attempt now.
local function capped()
  local last_talk = tonumber(redis.call("GET", talked) or "0") or 0
  local own = tonumber(redis.call("ZSCORE", cap, message_id) or "")
  for at = HEAD, #ARGV - 1, PER_CAP do
    local max_attempts, days_ms, quiet_ms = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
    if last_talk > 0 and NOW < last_talk + quiet_ms then return true end
    -- an attempt at `a` counts while NOW - a < days (compliance.cap_allows_at)
    local since = NOW - days_ms
    local recent = redis.call("ZCOUNT", cap, "(" .. S(since), "+inf")
    if own and own > since then recent = recent - 1 end
    if recent >= max_attempts then return true end
  end
  return false
end

local state = redis.call("HGET", campaign_key, "state")
local reason, final = nil, true
if state == "cancelled" or not state then reason = "cancelled"
elseif state == "finished" then reason = "ended"
else
  reason = contact_refusal(scope, channel, {ident, other_ident}, disputes, debt)
  if reason == "revocation_pending" then final = false end  -- an agent may dismiss it
  if not reason then
    final = false
    if state ~= "running" then reason = "paused"
    elseif capped() then reason = "cap"
    elseif NOW < open_from or NOW >= open_until then reason = "outside_window" end
  end
end

if not reason then  -- every rule allows it: the lease, as begin_send.lua takes it
  -- The caps count an attempt from when it leaves, not from when it was queued: a
  -- message that waited a day must not let the next one go a day early.
  if cap ~= "" then redis.call("ZADD", cap, "XX", NOW_S, message_id) end
  local attempt_no = redis.call("HINCRBY", k, "attempts", 1)
  redis.call("HSET", k, "status", "sending", "payload", payload, "sending_since", NOW_S, "updated_at", NOW_S)
  redis.call("ZADD", retries_key(), S(NOW + lease_ms), message_id)
  return {"go", attempt_no}
end

local outcome = final and "refused" or "held"
local why = "refused_at_send: " .. reason
redis.call("HSET", k, "status", outcome, "error", why, "payload", payload, "updated_at", NOW_S)
redis.call("ZREM", retries_key(), message_id)
if cap ~= "" then redis.call("ZREM", cap, message_id) end  -- never placed: no attempt for any cap to count
redis.call("SREM", pending, message_id)
emit({type = "delivery", channel = channel, direction = "out", conversation = conv, message = message_id,
  status = outcome, error = why, attempt = attempts})
-- The recipient, if this attempt is still where it stands (it always is, but for a
-- message replayed after its recipient moved on).
if redis.call("HGET", status, seq) == "sent:" .. attempt .. ":" .. channel then
  local counters = {"refused_at_send"}
  if final then
    redis.call("HSET", status, seq, "suppressed:refused_at_send:" .. attempt .. ":" .. channel .. ":" .. reason)
    counters[#counters + 1] = "suppressed"
  else
    redis.call("HSET", status, seq, "held:" .. attempt .. ":" .. channel .. ":" .. reason)
    redis.call("ZADD", due, reason == "outside_window" and reopens or seq, seq)  -- else due at once, in file order
  end
  redis.call("HINCRBY", stats, "sent", -1)
  redis.call("HINCRBY", stats, "refused_at_send:" .. reason, 1)
  if variant ~= "" then redis.call("HINCRBY", stats, variant .. "sent", -1) end
  for _, counter in ipairs(counters) do
    redis.call("HINCRBY", stats, counter, 1)
    if variant ~= "" then redis.call("HINCRBY", stats, variant .. counter, 1) end
  end
end
return {outcome, attempts, reason}
