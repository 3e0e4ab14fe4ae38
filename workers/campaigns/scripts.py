"""The campaigns' Lua scripts, each one atomic decision on the tenant's shard.

KEYS[1] is the shard's base key (as for router/lua); the other keys, built by
router.keys, come as arguments, and all of them share the tenant's hash tag.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from router.store import Store

_NOW = """
local B = KEYS[1]
local t = redis.call("TIME")
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function S(x) return string.format("%d", x) end
local unpack = unpack or table.unpack
"""

# Claim due recipients for one worker. Each claimed recipient's score becomes the end
# of its lease: no other worker takes it before then, and one whose worker died is
# claimed again afterwards (the send script then makes a late duplicate a no-op).
# ARGV: due key, audience key, status key, count, lease ms.
# Returns {seqs, recipients, statuses, now} or, with nothing due, {{}, {}, {}, now, next due score}.
CLAIM = (
    _NOW
    + """
local due, audience, status = ARGV[1], ARGV[2], ARGV[3]
local seqs = redis.call("ZRANGEBYSCORE", due, "-inf", S(NOW), "LIMIT", 0, tonumber(ARGV[4]))
if #seqs == 0 then
  local first = redis.call("ZRANGE", due, 0, 0, "WITHSCORES")
  return {{}, {}, {}, NOW, first[2] or "-1"}
end
local lease = S(NOW + tonumber(ARGV[5]))
local pairs_ = {}
for i, seq in ipairs(seqs) do
  pairs_[#pairs_ + 1] = lease
  pairs_[#pairs_ + 1] = seq
end
redis.call("ZADD", due, unpack(pairs_))
local recipients = redis.call("HMGET", audience, unpack(seqs))
local states = redis.call("HMGET", status, unpack(seqs))
for i = 1, #states do if not states[i] then states[i] = "" end end
for i = 1, #recipients do if not recipients[i] then recipients[i] = "" end end
return {seqs, recipients, states, NOW}
"""
)

# Send a batch of recipients' messages, each at most once per attempt, with the
# compliance checks that must hold at the instant of sending: the campaign still
# running (a pause stops even a batch in flight), the channel's opt-outs, the
# do-not-contact list, an open dispute (of the customer or the debt), and an
# unchanged frequency-cap history (else the worker decides again). A sent recipient
# gets, in this one step: the customer and their campaign conversation (so that a
# reply routes to the campaign's queue: router/lua/intake.lua reads campaign_conv),
# the history entry, the outbound message and its event, the cap attempt, its status.
# ARGV: 1 status key, 2 due key, 3 stats key, 4 outbound stream, 5 events stream,
# 6 queue, 7 campaign, 8 replies route to the campaign until (ms), 9 cap key ttl ms (at least),
# 10 disputes key or "" (not collections), 11 queue priority, 12 campaign key,
# 13 do-not-contact key, then RECIPIENT_FIELDS per recipient: seq, attempt, channel,
# address, identity, customer id if new, conversation, message, history entry,
# message event, context JSON, cap key (attempts recorded) or "", cap attempts seen (-1:
# no cap of this campaign applies, nothing to recheck), message id,
# the channel's suppression key, debt ("debt:<account>" or ""), the A/B variant's counter
# prefix ("v:<name>:" or ""), the recipient's other identity ("" or, say, their email when
# texted), linked to the customer if nobody has it yet, so a reply on that channel routes too.
# Returns one outcome per recipient: sent | done:<status> | suppressed:<reason> | recheck | stopped.
SEND = (
    _NOW
    + """
local status, due, stats, outbound, events = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local queue, campaign, reply_until, cap_ttl = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local disputes, priority, dnc = ARGV[10], ARGV[11], ARGV[13]
local W = 18
local results = {}
if redis.call("HGET", ARGV[12], "state") ~= "running" then
  for i = 14, #ARGV, W do results[#results + 1] = "stopped" end
  return results
end
local sent, suppressed = 0, 0

local function one(a)
  local seq, attempt, channel, address = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local ident, conv, cap, debt, variant = ARGV[a + 4], ARGV[a + 6], ARGV[a + 11], ARGV[a + 15], ARGV[a + 16]
  local st = redis.call("HGET", status, seq)
  if st then
    local state, n = string.match(st, "^(%a+):?(%d*)")
    if state ~= "retry" and not (state == "sent" and tonumber(n) < attempt) then
      redis.call("ZREM", due, seq)
      return "done:" .. st
    end
  end
  local customer = redis.call("HGET", B .. ":ident", ident)
  local reason = nil
  if redis.call("SISMEMBER", ARGV[a + 14], address) == 1 then reason = "opted_out"
  elseif redis.call("SISMEMBER", dnc, address) == 1 then reason = "do_not_contact"
  elseif disputes ~= "" and ((debt ~= "" and redis.call("SISMEMBER", disputes, debt) == 1)
      or (customer and redis.call("SISMEMBER", disputes, customer) == 1)) then reason = "disputed" end
  if reason then
    redis.call("HSET", status, seq, "suppressed:" .. reason)
    redis.call("ZREM", due, seq)
    suppressed = suppressed + 1
    if variant ~= "" then redis.call("HINCRBY", stats, variant .. "suppressed", 1) end
    return "suppressed:" .. reason
  end
  local seen = tonumber(ARGV[a + 12])
  if cap ~= "" and seen >= 0 and redis.call("ZCARD", cap) ~= seen then return "recheck" end
  if not customer then
    customer = ARGV[a + 5]
    redis.call("HSET", B .. ":ident", ident, customer)
    redis.call("HSET", B .. ":cust:" .. customer, "id", customer, "created_at", S(NOW))
  end
  local cust = B .. ":cust:" .. customer
  local c = B .. ":conv:" .. conv
  if redis.call("EXISTS", c) == 0 then
    redis.call("HSET", c, "id", conv, "customer", customer, "channel", channel, "address", address,
      "state", "campaign", "queue", queue, "kind", "campaign", "campaign", campaign,
      "campaign_recipient", seq, "campaign_context", ARGV[a + 10], "created_at", S(NOW),
      "priority", priority, "level", "0", "attempts", "0")
    redis.call("ZADD", cust .. ":convs", S(NOW), conv)
  end
  redis.call("RPUSH", c .. ":log", ARGV[a + 8])
  redis.call("HSET", c, "last_channel", channel, "last_address", address, "last_reply_at", S(NOW))
  redis.call("HSET", cust, "ident:" .. ident, "1", "campaign_conv", conv, "campaign_until", reply_until)
  local other = ARGV[a + 17]
  if other ~= "" and redis.call("HSETNX", B .. ":ident", other, customer) == 1 then
    redis.call("HSET", cust, "ident:" .. other, "1")
  end
  redis.call("XADD", outbound, "*", "e", ARGV[a + 7])
  redis.call("XADD", events, "*", "e", ARGV[a + 9])
  if cap ~= "" then
    redis.call("ZADD", cap, S(NOW), ARGV[a + 13])
    -- only ever lengthened: a campaign with a shorter cap must not drop what a longer one counts
    if redis.call("PTTL", cap) < tonumber(cap_ttl) then redis.call("PEXPIRE", cap, cap_ttl) end
  end
  redis.call("HSET", status, seq, "sent:" .. ARGV[a + 1] .. ":" .. channel)
  redis.call("ZREM", due, seq)
  sent = sent + 1
  if variant ~= "" then redis.call("HINCRBY", stats, variant .. "sent", 1) end
  return "sent"
end

for a = 14, #ARGV, W do results[#results + 1] = one(a) end
if sent > 0 then redis.call("HINCRBY", stats, "sent", sent) end
if suppressed > 0 then redis.call("HINCRBY", stats, "suppressed", suppressed) end
return results
"""
)
RECIPIENT_FIELDS = 18

# Settle claimed recipients without sending, each unless it was sent meanwhile (a worker
# whose lease ran out must not undo another's send). A batch's recipients in one call:
# each one's check and write are atomic together, as they must be; one call saves a
# script run per recipient.
# ARGV: status key, due key, stats key, then per recipient: seq, action (later | final),
# due ms (later) or status (final), counter to add 1 to ("" for none).
# Returns how many were settled (the others had been sent).
SETTLE = """
local status, due, stats = ARGV[1], ARGV[2], ARGV[3]
local settled = 0
for i = 4, #ARGV, 4 do
  local seq, action, value, counter = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local st = redis.call("HGET", status, seq)
  if st and string.sub(st, 1, 6) ~= "retry:" then
    redis.call("ZREM", due, seq)
  else
    if action == "later" then
      redis.call("ZADD", due, value, seq)
    else
      redis.call("HSET", status, seq, value)
      redis.call("ZREM", due, seq)
    end
    if counter ~= "" then redis.call("HINCRBY", stats, counter, 1) end
    settled = settled + 1
  end
end
return settled
"""

# A delivery outcome of one attempt: counted once, and a failure schedules the next
# attempt (on the fallback channel) when the policy allows one.
# ARGV: status key, due key, stats key, seq, attempt, outcome (delivered | failed | suppressed),
# next channel ("" for no further attempt), due ms, reason, the A/B variant's counter prefix or "".
OUTCOME = (
    _NOW
    + """
local status, due, stats, seq, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local st = redis.call("HGET", status, seq)
if not st then return 0 end
local state, n, channel = string.match(st, "^(%a+):(%d+):(%a+)")
if state ~= "sent" or n ~= attempt then return 0 end
local counter
if ARGV[6] == "delivered" then
  redis.call("HSET", status, seq, "delivered:" .. n .. ":" .. channel)
  counter = "delivered"
elseif ARGV[7] ~= "" then
  redis.call("HSET", status, seq, "retry:" .. S(tonumber(n) + 1) .. ":" .. ARGV[7])
  redis.call("ZADD", due, ARGV[8], seq)
  counter = "retried"
elseif ARGV[6] == "suppressed" then
  -- never left (refused by our own rule at dispatch): suppressed instead of sent, so the
  -- recipient counts once in the progress bar's done (sent - retried + suppressed + skipped)
  redis.call("HSET", status, seq, "suppressed:refused:" .. n .. ":" .. channel .. ":" .. ARGV[9])
  counter = "suppressed"
  redis.call("HINCRBY", stats, "sent", -1)
  if ARGV[10] ~= "" then redis.call("HINCRBY", stats, ARGV[10] .. "sent", -1) end
else
  redis.call("HSET", status, seq, "failed:" .. n .. ":" .. channel .. ":" .. ARGV[9])
  counter = "failed"
end
redis.call("HINCRBY", stats, counter, 1)
if ARGV[10] ~= "" then redis.call("HINCRBY", stats, ARGV[10] .. counter, 1) end
return 1
"""
)

# Token buckets: take up to ARGV[1] tokens from every (key, per minute, burst) bucket
# that follows, the same number from each, refilled by the time passed.
# Returns {granted, ms until a token when none was granted}.
TAKE_TOKENS = (
    _NOW
    + """
local want = tonumber(ARGV[1])
local grant, wait = want, 0
local buckets = {}
for i = 2, #ARGV, 3 do
  local rate, burst = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local f = redis.call("HMGET", ARGV[i], "tokens", "at")
  local tokens = tonumber(f[1] or burst)
  local at = tonumber(f[2] or NOW)
  tokens = math.min(burst, tokens + math.max(0, NOW - at) * rate / 60000)
  buckets[#buckets + 1] = {ARGV[i], tokens}
  if tokens < grant then grant = math.floor(tokens) end
  if tokens < 1 then wait = math.max(wait, math.ceil((1 - tokens) * 60000 / rate)) end
end
if grant < 0 then grant = 0 end
for _, b in ipairs(buckets) do
  redis.call("HSET", b[1], "tokens", tostring(b[2] - grant), "at", S(NOW))
  redis.call("PEXPIRE", b[1], 86400000)
end
return {grant, wait}
"""
)

GIVE_TOKENS = """
for i = 2, #ARGV, 3 do
  local tokens = tonumber(redis.call("HGET", ARGV[i], "tokens") or ARGV[i + 2])
  redis.call("HSET", ARGV[i], "tokens", tostring(math.min(tonumber(ARGV[i + 2]), tokens + tonumber(ARGV[1]))))
end
return 1
"""

# Count something once per recipient: a flag beside its status, then the counter.
# ARGV: status key, stats key, flag field, counter, the A/B variant's counter prefix or "",
# and optionally how much to add (default 1: a promise adds its cents) and the flag's value.
ONCE = """
if redis.call("HSETNX", ARGV[1], ARGV[3], ARGV[7] or "1") == 0 then return 0 end
local by = tonumber(ARGV[6] or "1")
redis.call("HINCRBY", ARGV[2], ARGV[4], by)
if ARGV[5] ~= "" then redis.call("HINCRBY", ARGV[2], ARGV[5] .. ARGV[4], by) end
return 1
"""

SOURCES = {
    "once": ONCE,
    "claim": CLAIM,
    "send": SEND,
    "settle": SETTLE,
    "outcome": OUTCOME,
    "take_tokens": TAKE_TOKENS,
    "give_tokens": GIVE_TOKENS,
}


@dataclass
class CampaignScripts:
    once: Any
    claim: Any
    send: Any
    settle: Any
    outcome: Any
    take_tokens: Any
    give_tokens: Any


_registered: weakref.WeakKeyDictionary[Store, CampaignScripts] = weakref.WeakKeyDictionary()


def get(store: Store) -> CampaignScripts:
    """The scripts registered on the store's client (once per store)."""
    found = _registered.get(store)
    if found is None:
        found = CampaignScripts(**{name: store.redis.register_script(src) for name, src in SOURCES.items()})
        _registered[store] = found
    return found
