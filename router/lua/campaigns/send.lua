-- Send a batch of recipients' messages, each at most once per attempt, with the
-- compliance checks that must hold at the instant they are queued: the campaign still
-- running (a pause stops even a batch in flight), the person's opt-outs and
-- do-not-contact entries (of this channel and address only under the tenant's
-- opt_out_scope "channel"), a revocation awaiting an agent's confirmation (the recipient
-- waits, REVOCATION_RECHECK_MS at a time, until it is confirmed or dismissed), an open
-- dispute (of the customer or the debt), and an unchanged frequency-cap history (else
-- the worker decides again): lib.lua's contact_refusal. The dispatcher
-- judges them all again as a message is to leave (begin_send.lua). A sent recipient
-- gets, in this one step: the customer and their campaign conversation (so that a
-- reply routes to the campaign's queue: intake.lua reads campaign_conv), the history
-- entry, the outbound message and its event, the cap attempt, its status, its place
-- among the messages pending at the dispatcher.
-- ARGV: the batch's 14 (workers/campaigns/scripts.py SendBatch), then 17 per recipient
-- (RecipientArgs); tests/router/test_scripts.py holds both to the names below.
-- A recipient due for a retry, or held (handed back by campaigns/begin_send.lua), may go;
-- a held one's message keeps its id and its one history entry.
-- Returns one outcome per recipient: sent | done:<status> | suppressed:<reason> | recheck | stopped
-- | waiting (a revocation awaits confirmation; due again later).
local status, due, stats, outbound, events = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local queue, campaign, reply_until, cap_ttl = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
-- the tenant's opt_out_scope: "person" or "channel"
local disputes, priority, campaign_key, scope = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
-- the message ids not yet through the dispatcher
local pending = ARGV[14]
local HEAD, PER_RECIPIENT = 14, 17
-- how long a recipient waits before a pending revocation is looked at again
local REVOCATION_RECHECK_MS = 15 * 60 * 1000
local results = {}
if redis.call("HGET", campaign_key, "state") ~= "running" then
  for _ = HEAD + 1, #ARGV, PER_RECIPIENT do results[#results + 1] = "stopped" end
  return results
end
local sent, suppressed = 0, 0

local function one(at)
  local seq, attempt, channel, address = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  -- the customer's id if the identity has none yet
  local ident, new_customer, conv = ARGV[at + 5], ARGV[at + 6], ARGV[at + 7]
  -- the outbound message, its history entry, its event (MessagePack); the recipient's
  -- template fields (JSON)
  local message, entry, message_event, context = ARGV[at + 8], ARGV[at + 9], ARGV[at + 10], ARGV[at + 11]
  -- the cap's attempts key ("" for none), the attempts the worker saw (-1: nothing to recheck)
  local cap, cap_seen, message_id = ARGV[at + 12], ARGV[at + 13], ARGV[at + 14]
  -- "debt:<account>" or "", the A/B variant's counter prefix or ""
  local debt, variant = ARGV[at + 15], ARGV[at + 16]
  -- the recipient's other identity ("" or, say, their email when texted): the same person's
  -- (their opt-outs count under "person"), linked to the customer if nobody has it yet, so a
  -- reply on that channel routes too
  local other_ident = ARGV[at + 17]
  local st = redis.call("HGET", status, seq)
  -- held: the dispatcher handed this attempt back (refused when it was to leave); it is
  -- queued again under its id, already in the conversation's history
  local held = false
  if st then
    local state, n = string.match(st, "^(%a+):?(%d*)")
    held = state == "held"
    if state ~= "retry" and not held and not (state == "sent" and tonumber(n) < tonumber(attempt)) then
      redis.call("ZREM", due, seq)
      return "done:" .. st
    end
  end
  local reason, customer = contact_refusal(scope, channel, {ident, other_ident}, disputes, debt)
  if reason == "revocation_pending" then  -- not final: an agent may dismiss it
    redis.call("ZADD", due, S(NOW + REVOCATION_RECHECK_MS), seq)
    return "waiting"
  end
  if reason then
    redis.call("HSET", status, seq, "suppressed:" .. reason)
    redis.call("ZREM", due, seq)
    suppressed = suppressed + 1
    if variant ~= "" then redis.call("HINCRBY", stats, variant .. "suppressed", 1) end
    return "suppressed:" .. reason
  end
  local seen = tonumber(cap_seen)
  if cap ~= "" and seen >= 0 and redis.call("ZCARD", cap) ~= seen then return "recheck" end
  if not customer then
    customer = new_customer
    redis.call("HSET", identities_key(), ident, customer)
    redis.call("HSET", customer_key(customer), "id", customer, "created_at", S(NOW))
  end
  local cust = customer_key(customer)
  local c = conversation_key(conv)
  if redis.call("EXISTS", c) == 0 then
    redis.call("HSET", c, "id", conv, "customer", customer, "channel", channel, "address", address,
      "state", "campaign", "queue", queue, "kind", "campaign", "campaign", campaign,
      "campaign_recipient", seq, "campaign_context", context, "created_at", S(NOW),
      "priority", priority, "level", "0", "attempts", "0")
    redis.call("ZADD", customer_conversations_key(customer), S(NOW), conv)
  end
  if not held then redis.call("RPUSH", conversation_log_key(conv), entry) end
  redis.call("HSET", c, "last_channel", channel, "last_address", address, "last_reply_at", S(NOW))
  redis.call("HSET", cust, "ident:" .. ident, "1", "campaign_conv", conv, "campaign_until", reply_until)
  if other_ident ~= "" and redis.call("HSETNX", identities_key(), other_ident, customer) == 1 then
    redis.call("HSET", cust, "ident:" .. other_ident, "1")
  end
  redis.call("XADD", outbound, "*", "e", message)
  if not held then redis.call("XADD", events, "*", "e", message_event) end
  if cap ~= "" then
    redis.call("ZADD", cap, S(NOW), message_id)
    -- only ever lengthened: a campaign with a shorter cap must not drop what a longer one counts
    if redis.call("PTTL", cap) < tonumber(cap_ttl) then redis.call("PEXPIRE", cap, cap_ttl) end
  end
  redis.call("HSET", status, seq, "sent:" .. attempt .. ":" .. channel)
  redis.call("ZREM", due, seq)
  redis.call("SADD", pending, message_id)
  sent = sent + 1
  if variant ~= "" then redis.call("HINCRBY", stats, variant .. "sent", 1) end
  return "sent"
end

for at = HEAD, #ARGV - 1, PER_RECIPIENT do results[#results + 1] = one(at) end
if sent > 0 then redis.call("HINCRBY", stats, "sent", sent) end
if suppressed > 0 then redis.call("HINCRBY", stats, "suppressed", suppressed) end
return results
