-- Shared by the scripts (router/lua/**/*.lua): router/scripts.py prepends to each script the
-- blocks of this file (separated by blank lines) that define a name the script
-- uses, directly or through another block, so a call defines only the helpers
-- it needs (each local function is a closure made anew on every call).
-- KEYS[1] is always the shard's base key "cr:{tenant}": every key a script
-- touches starts with it, so all of them live in one cluster slot and each
-- script is one atomic decision on one Redis node.
local B = KEYS[1]

local TENANT = string.match(B, "{(.-)}")

local CHANNELS = {}  -- router/events.py CHANNELS, written in by router/scripts.py

local unpack = unpack or table.unpack

-- The shard's keys, each built here once, as router/keys.py builds it: a builder's
-- name is the Keys member's with _key (tests/router/test_scripts.py compares them).
-- router/scripts.py writes each call of one out as the builder's body, so a key
-- costs what its concatenation costs and no closure or call.
local function identities_key() return B .. ":ident" end

local function threads_key() return B .. ":threads" end

local function queues_key() return B .. ":queues" end

local function timers_key() return B .. ":timers" end

local function retries_key() return B .. ":retries" end

local function events_key() return B .. ":events" end

local function inbound_key() return B .. ":inbound" end

local function customer_key(id) return B .. ":cust:" .. id end

local function customer_conversations_key(id) return B .. ":cust:" .. id .. ":convs" end

local function conversation_key(id) return B .. ":conv:" .. id end

local function conversation_log_key(id) return B .. ":conv:" .. id .. ":log" end

local function conversation_declined_key(id) return B .. ":conv:" .. id .. ":declined" end

local function waiting_key(queue) return B .. ":q:" .. queue .. ":wait" end

local function waiting_on_key(queue, channel) return B .. ":q:" .. queue .. ":wait:" .. channel end

local function members_key(queue, level) return B .. ":q:" .. queue .. ":m:" .. level end

local function agent_key(id) return B .. ":agent:" .. id end

local function agent_queues_key(id) return B .. ":agent:" .. id .. ":queues" end

local function agent_work_key(id) return B .. ":agent:" .. id .. ":work" end

local function ready_key(channel) return B .. ":ready:" .. channel end

local function reservation_key(id) return B .. ":res:" .. id end

local function delivery_key(id) return B .. ":msg:" .. id end

local function provider_message_key(ref) return B .. ":provider:" .. ref end

local function suppression_key(channel) return B .. ":suppress:" .. channel end

local function do_not_contact_key() return B .. ":dnc" end

local function revocations_key() return B .. ":revoke" end


-- Numbers passed to redis.call are formatted with 14 significant digits by
-- Redis's Lua; scores and millisecond times need all of theirs.
local function S(x)
  return string.format("%d", x)
end

-- Whole numbers to and from text, remembered within a call: agents' loads and
-- capacities repeat from one offer to the next, and formatting or parsing one
-- costs Redis's Lua about 2k instructions (snprintf, strtod), a lookup a tenth.
local TEXT_OF, NUMBER_OF = {}, {}
local function remembered(cache, key, convert)
  local value = cache[key]
  if value == nil then
    value = convert(key)
    cache[key] = value
  end
  return value
end
local function text_of(n) return remembered(TEXT_OF, n, S) end
local function number_of(s) return s and remembered(NUMBER_OF, s, tonumber) or 0 end  -- nil (a field not set) is 0

local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()
local NOW_S = S(NOW)  -- NOW as text, made once (formatting a number costs about a third of a redis.call)

-- MessagePack pieces. A string is its header, then its bytes: FIXSTR by
-- length below 32 bytes (a table lookup), str_head above.
local FIXSTR = {[0] = "\160", "\161", "\162", "\163", "\164", "\165", "\166", "\167", "\168", "\169", "\170",
  "\171", "\172", "\173", "\174", "\175", "\176", "\177", "\178", "\179", "\180", "\181", "\182", "\183", "\184",
  "\185", "\186", "\187", "\188", "\189", "\190", "\191"}

local function str_head(s)
  local n = #s
  if n < 32 then return FIXSTR[n] end
  if n < 256 then return "\217" .. string.char(n) end
  if n < 65536 then return "\218" .. string.char(math.floor(n / 256), n % 256) end
  return "\219" .. string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

-- An integer: fixint, int32 below -32, uint64 from 128 (a millisecond time).
local function mp_int(v)
  v = math.floor(v)
  if v >= 0 and v < 128 then return string.char(v) end
  if v < 0 and v >= -32 then return string.char(256 + v) end
  if v < 0 then
    v = 4294967296 + v  -- two's complement
    return string.char(0xd2, math.floor(v / 16777216) % 256, math.floor(v / 65536) % 256,
      math.floor(v / 256) % 256, v % 256)
  end
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = v % 256
    v = math.floor(v / 256)
  end
  return string.char(0xcf, unpack(bytes))
end

-- Events go on the stream as MessagePack: Redis's built-in cmsgpack, or, in
-- the embedded store, which has none, this encoder of a flat map (strings,
-- integers, booleans), defined only there.
local pack = type(cmsgpack) == "table" and cmsgpack.pack
if not pack then
  pack = function(t)
    local parts, n = {}, 0
    for k, v in pairs(t) do
      n = n + 1
      parts[#parts + 1] = str_head(k) .. k
      local kind = type(v)
      if kind == "number" then parts[#parts + 1] = mp_int(v)
      elseif kind == "boolean" then parts[#parts + 1] = v and "\195" or "\194"
      else v = tostring(v) parts[#parts + 1] = str_head(v) .. v end
    end
    local head
    if n < 16 then head = string.char(0x80 + n) else head = string.char(0xde, math.floor(n / 256), n % 256) end
    return head .. table.concat(parts)
  end
end

-- Append a state event, packed, to the shard's events stream (the audit trail).
local function append_event(payload)
  return redis.call("XADD", events_key(), "*", "e", payload)
end

local function emit(event)
  event.tenant = TENANT
  event.occurred_at = NOW
  return append_event(pack(event))
end

-- The events every contact causes (queued, message, reserved) are packed by
-- one concatenation each, their keys' headers written out: cmsgpack walks a
-- Lua table at about 17k instructions an event on Redis 7.0, this takes about
-- 6k (callgrind; inline, as a function call per field would cost 4k more).
-- Every event ends with the same tenant and time.
-- (tests/router/test_event_packing.py checks them against msgspec.)
local EVENT_TAIL = "\166tenant" .. str_head(TENANT) .. TENANT .. "\171occurred_at" .. mp_int(NOW)

local function hgetall(key)
  local flat = redis.call("HGETALL", key)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

local function queue_conf(queue)
  local raw = redis.call("HGET", queues_key(), queue)
  if not raw then return nil end
  return cjson.decode(raw)
end

-- Higher priority first, then older first: one sorted-set score.
local function wait_score(priority, enqueued_at)
  return tonumber(enqueued_at) - tonumber(priority) * 1e13
end

-- Keep an agent's membership of the per-channel "ready" sets true to its
-- presence and load. Idle agents rank by how long they have been idle; agents
-- already working rank after them, by their last offer.
local function refresh_ready(agent)
  local a = hgetall(agent_key(agent))
  if not a.presence then return end
  local load_total = tonumber(a["load:total"] or 0)
  local cap_total = tonumber(a["cap:total"] or 0)
  local score
  if load_total == 0 then score = tonumber(a.idle_since or 0) else score = 1e13 + tonumber(a.last_offer or 0) end
  -- a call in hand blocks everything else when the tenant runs voice that way
  local on_call = a.exclusive_voice == "1" and tonumber(a["load:voice"] or 0) > 0
  for _, ch in ipairs(CHANNELS) do
    local ok = a.presence == "available" and load_total < cap_total and not on_call
      and tonumber(a["load:" .. ch] or 0) < tonumber(a["cap:" .. ch] or 0)
    if ok then
      redis.call("ZADD", ready_key(ch), S(score), agent)
    else
      redis.call("ZREM", ready_key(ch), agent)
    end
  end
end

-- Take one unit of an agent's capacity for an offer. Then they leave the
-- ready sets they have no room left in, and in the others rank as busy (after
-- idle agents, by this offer): the same outcome as refresh_ready for an agent
-- who was ready, from one read of the fields that decide it (this runs on every
-- offer). An agent who was working already and keeps room everywhere moves
-- only in the offered channel's set: among busy agents each channel ranks by
-- its own last offer until their state next changes (one update per offer
-- instead of one per channel, a fifth of an offer's time on Redis).
local BUSY_SCORE = S(1e13 + NOW)  -- the rank of an agent offered work now
local function take_slot(agent, channel)
  local a = agent_key(agent)
  local f = redis.call("HMGET", a, "load:" .. channel, "load:total", "cap:" .. channel, "cap:total", "exclusive_voice")
  local ch_load, total = number_of(f[1]) + 1, number_of(f[2]) + 1
  redis.call("HSET", a, "load:" .. channel, text_of(ch_load), "load:total", text_of(total), "last_offer", NOW_S)
  local blocked = total >= number_of(f[4]) or (channel == "voice" and f[5] == "1")
  -- already working, and room left: only the offered channel's rank changes
  local channels = (total > 1 and not blocked) and {channel} or CHANNELS
  for _, ch in ipairs(channels) do
    local key = ready_key(ch)
    if blocked or (ch == channel and ch_load >= number_of(f[3])) then
      redis.call("ZREM", key, agent)
    else
      redis.call("ZADD", key, "XX", BUSY_SCORE, agent)  -- only where they are ready already
    end
  end
end

-- Give back one unit of capacity; returns true when the agent became idle.
local function release_slot(agent, conv, channel)
  local a = agent_key(agent)
  if redis.call("SREM", agent_work_key(agent), conv) == 0 then return false end
  local ch = redis.call("HINCRBY", a, "load:" .. channel, -1)
  if ch < 0 then redis.call("HSET", a, "load:" .. channel, 0) end
  local total = redis.call("HINCRBY", a, "load:total", -1)
  if total <= 0 then
    redis.call("HSET", a, "load:total", 0, "idle_since", NOW_S)
  end
  refresh_ready(agent)
  return true
end

-- An agent who rejected or missed an offer is skipped for this long.
local DECLINE_MS = 120000

local function declined_recently(conv, agent)
  if not conv then return false end  -- a conversation no agent has been offered yet
  local at = redis.call("ZSCORE", conversation_declined_key(conv), agent)
  return at and (NOW - tonumber(at)) < DECLINE_MS
end

-- The agent a conversation is held for (sticky routing), or nil. A hold ends
-- when its time is up, or when that agent declined it or stepped away.
local function held_for(conv, sticky, until_ms)
  if not sticky or sticky == "" or NOW >= (tonumber(until_ms) or 0) then return nil end
  if declined_recently(conv, sticky) then return nil end
  local presence = redis.call("HGET", agent_key(sticky), "presence")
  if presence ~= "available" and presence ~= "busy" then return nil end
  return sticky
end

-- Up to `limit` conversations a routing decision can use, best first, from a
-- queue's waiting set of one channel, passing over those it cannot use so
-- they never hide the ones behind them: for one agent (`agent` given), those
-- held for someone else, declined by that agent, or not theirs at the
-- conversation's level; for any agent, those held for an agent who is not
-- ready. Looks at SCAN_MAX entries at most.
local SCAN_MAX = 1000

local function waiting_heads(queue, channel, limit, agent, out)
  local key = waiting_on_key(queue, channel)
  local offset, found = 0, 0
  while found < limit and offset < SCAN_MAX do
    local page = redis.call("ZRANGE", key, offset, offset + limit - 1, "WITHSCORES")
    if #page == 0 then break end
    for i = 1, #page, 2 do
      local conv = page[i]
      local f = redis.call("HMGET", conversation_key(conv), "sticky_agent", "sticky_until", "level", "channel", "state",
        "attempts")
      local holder = held_for(conv, f[1], f[2])
      local usable
      if agent then
        usable = (not holder or holder == agent) and not declined_recently(conv, agent)
          and redis.call("ZSCORE", members_key(queue, (f[3] or "0")), agent)
      else
        usable = not holder or redis.call("ZSCORE", ready_key(channel), holder)
      end
      if usable and found < limit then
        found = found + 1
        out[#out + 1] = {conv = conv, score = tonumber(page[i + 1]), queue = queue, holder = holder,
          level = f[3] or "0", channel = f[4], state = f[5], attempts = tonumber(f[6] or 0)}
      end
    end
    offset = offset + limit
  end
end

-- The agent to offer a queue's conversation to, and whether any ready agent
-- belongs to the queue at this level (if none does, no later conversation of
-- the same channel and level can be placed in the same call either: offers only
-- remove agents from the ready sets). `q` is the queue's configuration.
local RANKED = {least_occupied = true, round_robin = true, proficiency = true}

local function pick(q, queue, conv, channel, level, holder)
  local members = members_key(queue, level)
  local ready = ready_key(channel)
  if holder then
    -- held for one agent (sticky): only they may take it, when they are ready
    if redis.call("ZSCORE", ready, holder) and redis.call("ZSCORE", members, holder) then return holder, true end
    return nil, true
  end
  local ranked = RANKED[q.strategy]
  local any_member, best, best_value = false, nil, nil
  -- the ready set is ordered by idle time: longest idle reads only until the
  -- first eligible agent, a page at a time (the first agent alone, who is
  -- usually the one; then 16 at a time)
  local offset, size = 0, ranked and 16 or 1
  while true do
    -- (the usual first page, the first agent alone, with its bounds as text: Redis
    -- formats a number argument with snprintf)
    local page = offset == 0 and size == 1 and redis.call("ZRANGE", ready, "0", "0")
      or redis.call("ZRANGE", ready, offset, offset + size - 1)
    if #page == 0 then break end
    for _, agent in ipairs(page) do
      if redis.call("ZSCORE", members, agent) then
        any_member = true
        if not declined_recently(conv, agent) then
          if not ranked then return agent, true end
          local value
          if q.strategy == "least_occupied" then
            local f = redis.call("HMGET", agent_key(agent), "load:total", "cap:total")
            value = tonumber(f[1] or 0) / math.max(tonumber(f[2] or 1), 1)
          elseif q.strategy == "round_robin" then
            value = tonumber(redis.call("HGET", agent_key(agent), "last_offer") or 0)
          else
            value = -tonumber(redis.call("ZSCORE", members, agent))
          end
          if best == nil or value < best_value then best, best_value = agent, value end
        end
      end
    end
    offset, size = offset + size, 16
  end
  return best, any_member
end

-- A queue's waiting set holds its whole order (what supervisors see); one set
-- per channel beside it lets routing skip straight to the channels that have
-- ready agents, so a voice backlog never hides the emails behind it.
local function unwait(queue, conv, channel)
  redis.call("ZREM", waiting_key(queue), conv)
  if channel then redis.call("ZREM", waiting_on_key(queue, channel), conv) end
end

-- Add timers (a flat list of due, name) to the shard's timer set, or to
-- `pending`, a list the caller adds in one ZADD with its own.
local function add_timers(timers, pending)
  if #timers == 0 then return end
  if not pending then redis.call("ZADD", timers_key(), unpack(timers)) return end
  for _, v in ipairs(timers) do pending[#pending + 1] = v end
end

-- The reservation `res` of a conversation for an agent, offered now: it takes
-- capacity at once, so no other router can hand the agent more than its
-- capacity. The conversation's own record is the caller's to update. While the
-- offer is pending it is that record (state reserved, its agent, reservation
-- `res`) and its timer (when it expires); its id is the conversation's and a
-- count (conv.N). Its own hash is written when it ends (respond.lua, close.lua),
-- saying how, for a late answer to be told (writing one per offer cost about 15k
-- instructions of the 300k a contact costs).
-- `timers`, when given, collects its timeout (see add_timers).
local EXPIRES = {}  -- timeout -> {NOW + timeout as text, packed}: made once per queue in a call
local function offer(conv, res, agent, queue, channel, timeout_ms, timers)
  local expires = EXPIRES[timeout_ms]
  if not expires then
    expires = {S(NOW + timeout_ms), mp_int(NOW + timeout_ms)}
    EXPIRES[timeout_ms] = expires
  end
  take_slot(agent, channel)
  redis.call("SADD", agent_work_key(agent), conv)
  add_timers({expires[1], "res:" .. res}, timers)
  -- {type = "reserved", conversation, channel, reservation, agent, queue, expires_at}
  append_event("\137\164type\168reserved"
    .. "\172conversation" .. (FIXSTR[#conv] or str_head(conv)) .. conv
    .. "\167channel" .. (FIXSTR[#channel] or str_head(channel)) .. channel
    .. "\171reservation" .. (FIXSTR[#res] or str_head(res)) .. res
    .. "\165agent" .. (FIXSTR[#agent] or str_head(agent)) .. agent
    .. "\165queue" .. (FIXSTR[#queue] or str_head(queue)) .. queue
    .. "\170expires_at" .. expires[2] .. EVENT_TAIL)
end

-- Offer a waiting conversation to an agent. `attempts`, when the caller read
-- it in this call, saves reading it again.
local function reserve(conv, agent, queue, channel, timeout_ms, attempts)
  local c = conversation_key(conv)
  local n = (attempts or tonumber(redis.call("HGET", c, "attempts") or 0)) + 1
  local res = conv .. "." .. n
  unwait(queue, conv, channel)
  redis.call("HSET", c, "attempts", S(n), "state", "reserved", "agent", agent, "reservation", res)
  offer(conv, res, agent, queue, channel, timeout_ms)
  return res
end

-- An offer round on a queue: its waiting conversations, best first (priority,
-- then age), each offered to a ready agent. Each offer is a reservation taken
-- inside the calling script, so any number of routing workers may run rounds
-- at once without double-booking. Looks at `limit` conversations of each
-- channel that has a ready agent; returns the agents offered (`limit` of them:
-- there may be more to offer).
local function offer_round(queue, limit)
  -- Most rounds find nothing waiting (intake offers a conversation at once when it can).
  if redis.call("ZCARD", waiting_key(queue)) == 0 then return {} end
  local q = queue_conf(queue)
  if not q then return {} end
  local heads = {}
  for _, ch in ipairs(CHANNELS) do
    if redis.call("ZCARD", ready_key(ch)) > 0 then waiting_heads(queue, ch, limit, nil, heads) end
  end
  if #heads == 0 then return {} end
  table.sort(heads, function(x, y) return x.score < y.score end)
  local timeout_ms = (q.reservation_timeout or 30) * 1000
  local exhausted = {}  -- channel:level pairs that no ready agent serves at all
  local made = {}
  for i = 1, math.min(#heads, limit) do
    -- a conversation's fields cannot change within this call before its own turn
    local conv, holder, channel, level = heads[i].conv, heads[i].holder, heads[i].channel, heads[i].level
    if channel and heads[i].state == "queued" and not exhausted[channel .. ":" .. level] then
      local agent, any_member = pick(q, queue, conv, channel, level, holder)
      if agent then
        reserve(conv, agent, queue, channel, timeout_ms, heads[i].attempts)
        made[#made + 1] = agent
      elseif not any_member then
        exhausted[channel .. ":" .. level] = true
      end
    end
  end
  return made
end

-- Put a conversation (back) in a queue's waiting set, keeping its original age.
local function enqueue(conv, queue, level)
  local c = conversation_key(conv)
  local f = redis.call("HMGET", c, "priority", "enqueued_at", "channel")
  redis.call("HSET", c, "state", "queued", "queue", queue, "level", level, "agent", "", "reservation", "")
  local score = S(wait_score(f[1] or 0, f[2] or NOW))
  redis.call("ZADD", waiting_key(queue), score, conv)
  redis.call("ZADD", waiting_on_key(queue, f[3]), score, conv)
end

-- Schedule the escalation steps and the service-level check of a queue for a
-- conversation, counted from its original age (never in the past). `timers`,
-- when given, collects them (see add_timers).
local function schedule_queue_timers(conv, queue, enqueued_at, q, timers)
  q = q or queue_conf(queue)
  if not q then return end
  local due = {}
  for i, step in ipairs(q.escalation or {}) do
    due[#due + 1] = S(math.max(NOW, tonumber(enqueued_at) + step.after * 1000))
    due[#due + 1] = "esc:" .. conv .. ":" .. S(i - 1)
  end
  if q.sla_seconds and q.sla_seconds > 0 then
    due[#due + 1] = S(math.max(NOW, tonumber(enqueued_at) + q.sla_seconds * 1000))
    due[#due + 1] = "sla:" .. conv
  end
  add_timers(due, timers)
end

-- The channels each kind of identity reaches (router/customers.py ADDRESS_KIND; a test
-- holds the two together): an SMS STOP from a number covers calls to it under "person".
local KIND_CHANNELS = {phone = {"sms", "voice", "fax"}, email = {"email"}, telegram = {"telegram"},
  webchat = {"webchat"}}

-- The identities of the person a message goes to, each once, in order: `idents` (its
-- address's, then the other addresses the campaign row gives them, "" for none), and every
-- identity of the customers those name. Returns the list and the customer of idents[1].
local function person_identities(idents)
  local list, seen, customer = {}, {}, nil
  local function add(ident)
    if ident ~= "" and not seen[ident] then
      seen[ident] = true
      list[#list + 1] = ident
    end
  end
  for i, ident in ipairs(idents) do
    add(ident)
    local owner = ident ~= "" and redis.call("HGET", identities_key(), ident)
    if owner then
      if i == 1 then customer = owner end
      for _, field in ipairs(redis.call("HKEYS", customer_key(owner))) do
        if string.sub(field, 1, 6) == "ident:" then add(string.sub(field, 7)) end
      end
    end
  end
  return list, customer
end

-- Why a campaign message may not reach this person on `channel` (nil if nothing stands in
-- the way); one rule for the moment a message is queued (campaigns/send.lua), the moment
-- it leaves (campaigns/begin_send.lua) and anyone who asks (consent.lua). `idents` is the
-- message's address as an identity first ("phone:+1...", "email:a@b"), then the others the
-- campaign row gives the person. Under the tenant's opt_out_scope "person" (the default),
-- an opt-out of any channel of any of the person's identities, or any of their addresses
-- on the do-not-contact list, refuses it ("opted_out", "do_not_contact"); under "channel",
-- only the address's own opt-out of this channel and its own do-not-contact entry do. A
-- free-text revocation an agent has not yet confirmed or dismissed (`:revoke`) holds
-- every channel of the person whatever the scope ("revocation_pending"): it may have
-- meant any of them. Then, for collections (`disputes` not ""), an open dispute of the
-- debt or of the customer ("disputed"). Returns the reason and the customer of idents[1].
local function contact_refusal(scope, channel, idents, disputes, debt)
  local person, customer = person_identities(idents)
  -- the identities whose opt-outs and do-not-contact entries count, as {address, channels}
  local judged = {}
  for _, ident in ipairs(person) do
    local kind, address = string.match(ident, "^([^:]+):(.*)$")
    if kind and scope ~= "channel" then
      judged[#judged + 1] = {address, KIND_CHANNELS[kind] or {}}
    elseif kind and ident == idents[1] then
      judged[#judged + 1] = {address, {channel}}
    end
  end
  for _, one in ipairs(judged) do
    for _, ch in ipairs(one[2]) do
      if redis.call("SISMEMBER", suppression_key(ch), one[1]) == 1 then return "opted_out", customer end
    end
  end
  for _, one in ipairs(judged) do
    if redis.call("SISMEMBER", do_not_contact_key(), one[1]) == 1 then return "do_not_contact", customer end
  end
  for _, ident in ipairs(person) do
    if redis.call("HEXISTS", revocations_key(), ident) == 1 then return "revocation_pending", customer end
  end
  if disputes ~= "" and ((debt ~= "" and redis.call("SISMEMBER", disputes, debt) == 1)
      or (customer and redis.call("SISMEMBER", disputes, customer) == 1)) then return "disputed", customer end
  return nil, customer
end
