-- Customers' messages enter routing, atomically each: resolve the customer
-- from the address, join their open conversation or open a new one, append
-- the message to its history and, for a new conversation, queue it (or offer
-- it at once, below). This runs once per contact: each hash is written once,
-- with every field the call sets in it, and nothing is read back that this
-- call knows already.
-- One call takes a routing worker's whole batch for the shard, in order (the
-- fixed cost of a script call, a sixth of a contact's, is paid once):
-- ARGV[1] is the number of contacts, ARGV[2] and ARGV[3] the consumer group
-- and consumer that read them from the shard's inbound stream, ARGV[4] how many
-- waiting conversations an offer round looks at, ARGV[5] and ARGV[6] the
-- lowest and highest of their entries' ids (router/intake.py IntakeBatch), then
-- ARGS_PER_CONTACT arguments for each contact (IntakeArgs), the last its stream
-- entry's id. tests/router/test_scripts.py holds both to the names below.
-- Each contact's entry is acknowledged in the call that stores it, so a
-- contact is stored exactly when its entry leaves the pending list. Only the
-- batch's entries still pending for this consumer are stored: one no longer
-- pending was stored already, and one another worker took over (it sat too
-- long) is that worker's to store; both are passed over as duplicates. One
-- whose contact failed stays pending.
-- Then one offer round on each queue the call left conversations waiting in,
-- in the same step: no worker can die between queueing a conversation and
-- offering it.
-- Returns {results, rounds}: results has {outcome, conversation, customer,
-- queue} per contact, or {"error", message}; rounds has {queue, offers made,
-- error or ""} for each round.
local ARGS_PER_CONTACT, HEADER = 16, 6
local COUNT, GROUP, CONSUMER, LOOKAHEAD = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local LOWEST, HIGHEST = ARGV[5], ARGV[6]
local ACK_CHUNK = 1000
local INBOUND = inbound_key()
local PENDING = {}  -- entry id -> true for the batch's entries still pending (filled below)

local confs = {}  -- queue configurations read in this call (false: no such queue)
local function conf(queue)
  if confs[queue] == nil then confs[queue] = queue_conf(queue) or false end
  return confs[queue] or nil
end

-- Whether a queue has conversations waiting: read once per call, then kept
-- here (within this call only this call adds to a waiting set).
local waiting = {}
local queued_in = {}  -- the queues this call added waiting conversations to
local function has_waiting(queue)
  if waiting[queue] == nil then
    waiting[queue] = redis.call("ZCARD", waiting_key(queue)) > 0
  end
  return waiting[queue]
end

local function intake(at)
  local contact, ident, channel, queue = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  -- priority and enqueued_at stay text (whole numbers, from Python): they are stored as
  -- they came, and a number would be formatted back for each command
  local priority, enqueued_at = ARGV[at + 5], ARGV[at + 6]
  local entry, provider_id, address = ARGV[at + 7], ARGV[at + 8], ARGV[at + 9]
  local refs, own_ref = ARGV[at + 10], ARGV[at + 11]
  local tenant_address = ARGV[at + 12]  -- the tenant's number or address the customer wrote to
  local kind = ARGV[at + 13]  -- message | call | callback | voicemail
  local name = ARGV[at + 14]  -- the name the channel gives the customer, or ""
  local language = ARGV[at + 15]  -- the customer's language, given or detected (router/language.py), or ""
  local entry_id = ARGV[at + 16]
  -- A customer or conversation this contact opens takes the contact's id: a call
  -- that failed part way and runs again on redelivery fills in the same records
  -- instead of leaving a half-made conversation behind.
  local new_customer, new_conv = contact, contact

  if not PENDING[entry_id] then return {"duplicate", "", "", ""} end

  -- The customer's fields this call sets, written at the end.
  local cust_fields = {"ident:" .. ident, "1", "last_seen", NOW_S}
  -- the newest name a channel gave; one an agent chose ("name") is never overwritten
  if name ~= "" then cust_fields[5], cust_fields[6] = "channel_name", name end
  local customer = redis.call("HGET", identities_key(), ident)
  local known = {}  -- open_conv, campaign_conv, campaign_until, last_agent: none for a new customer
  if customer then
    known = redis.call("HMGET", customer_key(customer), "open_conv", "campaign_conv", "campaign_until", "last_agent")
  else
    customer = new_customer
    -- (its id is its key's, and when it was first seen its first conversation's score
    -- in cust:<id>:convs: neither is written, a field fewer costing less than its share)
    redis.call("HSET", identities_key(), ident, customer)
  end

  -- An email reply joins the thread it answers, even from another address (whose
  -- customer is not the conversation's: see below). A reply to the customer's own
  -- closed conversation opens it again (`reopen`), unless an open one is referenced
  -- too, or its agent is still wrapping it up (their slot is held for it).
  local conv, reopen, reopen_attempts, reopen_queue = nil, nil, 0, nil
  if refs ~= "" then
    for ref in string.gmatch(refs, "[^\n]+") do
      local found = redis.call("HGET", threads_key(), ref)
      if found then
        local f = redis.call("HMGET", conversation_key(found), "state", "customer", "agent", "queue", "attempts")
        if f[1] and f[1] ~= "closed" then conv = found break end
        if f[1] == "closed" and not reopen and f[2] == customer and conf(f[4])
            and not (f[3] and f[3] ~= "" and redis.call("SISMEMBER", agent_work_key(f[3]), found) == 1) then
          reopen, reopen_attempts, reopen_queue = found, tonumber(f[5] or 0), f[4]
        end
      end
    end
  end
  if conv then reopen = nil end
  -- Otherwise the message joins the customer's open conversation, except that a new
  -- mail thread (a contact with its own reference, its Message-ID, whose references
  -- matched nothing) does not join another mail thread: it opens its own conversation.
  -- (An open conversation with this contact's own id is one an earlier call for
  -- this contact began and failed to finish: it is made again, below.)
  if not conv and not reopen and known[1] and known[1] ~= contact then
    local f = redis.call("HMGET", conversation_key(known[1]), "state", "channel")
    if f[1] and f[1] ~= "closed" and (own_ref == "" or f[2] ~= "email") then conv = known[1] end
  end
  -- A reply to a campaign message opens the conversation the campaign started with this
  -- customer (workers/campaigns records it when it sends), in the campaign's queue with
  -- the campaign's context, while the campaign's reply window lasts.
  local campaign_conv = nil
  if not conv and not reopen and known[2] and tonumber(known[3] or 0) > NOW then
    local f = redis.call("HMGET", conversation_key(known[2]), "state", "queue", "priority")
    if f[1] == "campaign" and conf(f[2]) then
      campaign_conv, queue, priority = known[2], f[2], tonumber(f[3]) and f[3] or priority
    end
  end

  local outcome, agent, chosen, first_res = "joined", "", nil, nil
  local timers = {}  -- added in one ZADD
  local c, q
  if conv then
    c = conversation_key(conv)
    local f = redis.call("HMGET", c, "agent", "queue", "customer")
    agent, queue = f[1] or "", f[2]
    if f[3] == customer then
      redis.call("HSET", c, "last_message_at", NOW_S, "last_channel", channel, "last_address", address,
        "tenant_address", tenant_address)
    else
      -- someone else in the thread (a colleague on Cc who replied): the message joins it,
      -- but replies still go where the customer last wrote, unless an agent chooses otherwise
      redis.call("HSET", c, "last_message_at", NOW_S)
    end
  else
    outcome = "new"
    conv = campaign_conv or reopen or new_conv
    c = conversation_key(conv)
    first_res = conv .. "." .. (reopen_attempts + 1)
    if reopen then
      queue = reopen_queue
      -- what its closing and its last life left: it starts again at level 0
      redis.call("HDEL", c, "closed_at", "disposition", "sla_breached", "accepted_at", "sticky_agent", "sticky_until")
    end
    q = conf(queue)
    -- Sticky routing: hold the conversation for the customer's last agent for a while.
    local holder, hold_until = q and q.strategy == "sticky" and known[4], nil
    if holder and holder ~= "" then
      hold_until = NOW + (q.sticky_seconds or 0) * 1000
    else
      holder = nil
    end
    -- A campaign conversation may be held already: a call an agent placed from the
    -- preview (workers/campaigns/preview.py) is theirs when the person answers.
    if not holder and conv == campaign_conv then
      local held = redis.call("HMGET", c, "sticky_agent", "sticky_until")
      if held[1] and held[1] ~= "" and (tonumber(held[2]) or 0) > NOW then
        holder, hold_until = held[1], tonumber(held[2])
      end
    end
    -- A new conversation that nothing waits ahead of in its queue is offered at
    -- once: the offer round route_batch runs after the batch (assign_queue.lua)
    -- would make the same offer with this conversation the only one waiting, so
    -- one call does both, and the conversation never enters the waiting sets.
    -- When others wait, that round decides, in their order.
    -- (A conversation opened just now has no declines to look up: nil for its id.)
    if q and not has_waiting(queue) then
      local declines = conv ~= new_conv and conv or nil
      local held = held_for(declines, holder, hold_until)
      if not held or redis.call("ZSCORE", ready_key(channel), held) then
        chosen = pick(q, queue, declines, channel, "0", held)
      end
    end
    -- the conversation as enqueue (and then reserve) would leave it, with this first message;
    -- what goes without saying is left out (conversations.complete fills it in): its id,
    -- level 0, and for a conversation opened now, where and when the customer last wrote
    -- (this message: its channel, address, time) and an empty tenant address. A field
    -- fewer costs less than its share, each one being searched for before it is added.
    local fields = {"customer", customer, "channel", channel, "address", address,
      "priority", priority, "enqueued_at", enqueued_at, "created_at", NOW_S,
      "attempts", S(reopen_attempts + (chosen and 1 or 0)), "queue", queue, "kind", kind,
      "state", chosen and "reserved" or "queued", "agent", chosen or "", "reservation", chosen and first_res or ""}
    if reopen then  -- its reservations so far keep their ids (res:<conv>.<n>)
      fields[#fields + 1], fields[#fields + 2] = "level", "0"
    end
    if conv ~= new_conv then  -- a campaign's or a reopened conversation: its own were earlier
      fields[#fields + 1], fields[#fields + 2] = "last_message_at", NOW_S
      fields[#fields + 1], fields[#fields + 2] = "last_channel", channel
      fields[#fields + 1], fields[#fields + 2] = "last_address", address
    end
    if tenant_address ~= "" or conv ~= new_conv then
      fields[#fields + 1], fields[#fields + 2] = "tenant_address", tenant_address
    end
    if language ~= "" then
      fields[#fields + 1], fields[#fields + 2] = "language", language
    end
    if holder then
      fields[#fields + 1], fields[#fields + 2] = "sticky_agent", holder
      fields[#fields + 1], fields[#fields + 2] = "sticky_until", S(hold_until)
      timers[#timers + 1], timers[#timers + 2] = S(hold_until), "hold:" .. conv
    end
    redis.call("HSET", c, unpack(fields))
    cust_fields[#cust_fields + 1], cust_fields[#cust_fields + 2] = "open_conv", conv
    redis.call("ZADD", customer_conversations_key(customer), NOW_S, conv)
    if not chosen then
      local score = S(wait_score(priority, enqueued_at))
      redis.call("ZADD", waiting_key(queue), score, conv)
      redis.call("ZADD", waiting_on_key(queue, channel), score, conv)
      waiting[queue] = true
      queued_in[queue] = true
    end
    schedule_queue_timers(conv, queue, enqueued_at, q or {}, timers)
    -- {type = "queued", conversation, channel, queue, priority, customer}: see EVENT_TAIL
    append_event("\136\164type\166queued"
      .. "\172conversation" .. (FIXSTR[#conv] or str_head(conv)) .. conv
      .. "\167channel" .. (FIXSTR[#channel] or str_head(channel)) .. channel
      .. "\165queue" .. (FIXSTR[#queue] or str_head(queue)) .. queue
      .. "\168priority" .. mp_int(tonumber(priority))
      .. "\168customer" .. (FIXSTR[#customer] or str_head(customer)) .. customer .. EVENT_TAIL)
  end
  redis.call("HSET", customer_key(customer), unpack(cust_fields))

  redis.call("RPUSH", conversation_log_key(conv), entry)
  if own_ref ~= "" then redis.call("HSET", threads_key(), own_ref, conv) end
  -- {type = "message", conversation, channel, direction = "in", message, customer, agent, provider_id}
  append_event("\138\164type\167message"
    .. "\172conversation" .. (FIXSTR[#conv] or str_head(conv)) .. conv
    .. "\167channel" .. (FIXSTR[#channel] or str_head(channel)) .. channel
    .. "\169direction\162in"
    .. "\167message" .. (FIXSTR[#contact] or str_head(contact)) .. contact
    .. "\168customer" .. (FIXSTR[#customer] or str_head(customer)) .. customer
    .. "\165agent" .. (FIXSTR[#agent] or str_head(agent)) .. agent
    .. "\171provider_id" .. (FIXSTR[#provider_id] or str_head(provider_id)) .. provider_id .. EVENT_TAIL)
  if chosen then offer(conv, first_res, chosen, queue, channel, (q.reservation_timeout or 30) * 1000, timers) end
  add_timers(timers)
  return {outcome, conv, customer, queue}
end

-- The batch's entries pending for this consumer, from the group's pending list
-- over the batch's range of ids (XCLAIM would also look each one up in the
-- stream: 9k instructions an entry, against about 2k). Should the range hold
-- more of this consumer's entries than the reply's limit, the batch's entries
-- the reply missed are looked up one by one.
local ids = {}
for i = 1, COUNT do ids[i] = ARGV[HEADER + i * ARGS_PER_CONTACT] end
local function note_pending(rows)
  for _, row in ipairs(rows) do PENDING[row[1]] = true end
end
local LIMIT = COUNT + 100
local rows = redis.call("XPENDING", INBOUND, GROUP, LOWEST, HIGHEST, LIMIT, CONSUMER)
note_pending(rows)
if #rows >= LIMIT then
  for _, id in ipairs(ids) do
    if not PENDING[id] then note_pending(redis.call("XPENDING", INBOUND, GROUP, id, id, 1, CONSUMER)) end
  end
end

-- A contact whose intake fails (a key of the wrong type, say) fails alone: the
-- batch goes on, and it comes back as {"error", message}, its entry still
-- pending, to be redelivered. (Redis keeps what a failed call wrote before its
-- error.)
local results, stored = {}, {}
for i = 1, COUNT do
  local ok, result = pcall(intake, HEADER + (i - 1) * ARGS_PER_CONTACT)
  if not ok then
    result = {"error", type(result) == "table" and result.err or tostring(result)}
  elseif result[1] ~= "duplicate" then
    stored[#stored + 1] = ids[i]
  end
  results[i] = result
end
-- In chunks: Lua unpacks no more than about 8000 values at once, and a batch
-- (CONTACTROUTER_BATCH) may be bigger.
for first = 1, #stored, ACK_CHUNK do
  redis.call("XACK", INBOUND, GROUP, unpack(stored, first, math.min(first + ACK_CHUNK - 1, #stored)))
end

local rounds = {}
for queue in pairs(queued_in) do rounds[#rounds + 1] = queue end
table.sort(rounds)  -- the same order on every run
for i, queue in ipairs(rounds) do
  -- a round that fails (a Redis error) leaves its contacts stored and waiting: the worker logs
  -- it, and the queue's next round (a contact, an agent with room, a timer) offers them
  local ok, made = pcall(offer_round, queue, LOOKAHEAD)
  if ok then
    rounds[i] = {queue, #made, ""}
  else
    rounds[i] = {queue, 0, type(made) == "table" and made.err or tostring(made)}
  end
end
return {results, rounds}
