-- A customer's message enters routing, atomically: resolve the customer from
-- the address, join their open conversation or open a new one, append the
-- message to its history and, for a new conversation, queue it. A marker per
-- contact makes a redelivered stream entry a no-op.
local contact, ident, new_customer, new_conv = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local channel, queue, priority, enqueued_at = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local entry, provider_id, address, refs, own_ref = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local tenant_address = ARGV[14]  -- the tenant's number or address the customer wrote to
local kind = ARGV[15]  -- message | call | callback | voicemail

if not redis.call("SET", B .. ":seen:routed:" .. contact, "1", "NX", "EX", 604800) then
  return {"duplicate", "", "", ""}
end

local customer = redis.call("HGET", B .. ":ident", ident)
if not customer then
  customer = new_customer
  redis.call("HSET", B .. ":ident", ident, customer)
  redis.call("HSET", B .. ":cust:" .. customer, "id", customer, "created_at", S(NOW))
end
redis.call("HSET", B .. ":cust:" .. customer, "ident:" .. ident, "1", "last_seen", S(NOW))

local function is_open(conv)
  if not conv or conv == "" then return false end
  local state = redis.call("HGET", B .. ":conv:" .. conv, "state")
  return state and state ~= "closed"
end

-- An email reply joins the thread it answers, even from another address.
local conv = nil
if refs ~= "" then
  for ref in string.gmatch(refs, "[^\n]+") do
    local found = redis.call("HGET", B .. ":threads", ref)
    if is_open(found) then conv = found break end
  end
end
if not conv then
  local open = redis.call("HGET", B .. ":cust:" .. customer, "open_conv")
  if is_open(open) then conv = open end
end
-- A reply to a campaign message opens the conversation the campaign started with this
-- customer (workers/campaigns records it when it sends), in the campaign's queue with
-- the campaign's context, while the campaign's reply window lasts.
local campaign_conv = nil
if not conv then
  local cc = redis.call("HMGET", B .. ":cust:" .. customer, "campaign_conv", "campaign_until")
  if cc[1] and tonumber(cc[2] or 0) > NOW then
    local f = redis.call("HMGET", B .. ":conv:" .. cc[1], "state", "queue", "priority")
    if f[1] == "campaign" and queue_conf(f[2]) then
      campaign_conv, queue, priority = cc[1], f[2], tonumber(f[3]) or priority
    end
  end
end

local outcome = "joined"
local c
if conv then
  c = B .. ":conv:" .. conv
else
  outcome = "new"
  conv = campaign_conv or new_conv
  c = B .. ":conv:" .. conv
  local q = queue_conf(queue) or {}
  redis.call("HSET", c, "id", conv, "customer", customer, "channel", channel, "address", address,
    "priority", S(priority), "enqueued_at", S(enqueued_at), "created_at", S(NOW), "level", "0",
    "attempts", "0", "queue", queue, "kind", kind)
  -- Sticky routing: hold the conversation for the customer's last agent for a while.
  local last_agent = q.strategy == "sticky" and redis.call("HGET", B .. ":cust:" .. customer, "last_agent")
  if last_agent and last_agent ~= "" then
    local until_ms = NOW + (q.sticky_seconds or 0) * 1000
    redis.call("HSET", c, "sticky_agent", last_agent, "sticky_until", S(until_ms))
    redis.call("ZADD", B .. ":timers", S(until_ms), "hold:" .. conv)
  end
  redis.call("HSET", B .. ":cust:" .. customer, "open_conv", conv)
  redis.call("ZADD", B .. ":cust:" .. customer .. ":convs", S(NOW), conv)
  enqueue(conv, queue, 0)
  schedule_queue_timers(conv, queue, enqueued_at, q)
  emit({type = "queued", conversation = conv, channel = channel, queue = queue,
    priority = priority, customer = customer})
end

redis.call("RPUSH", B .. ":conv:" .. conv .. ":log", entry)
redis.call("HSET", c, "last_message_at", S(NOW), "last_channel", channel, "last_address", address,
  "tenant_address", tenant_address)
if own_ref ~= "" then redis.call("HSET", B .. ":threads", own_ref, conv) end
local agent = redis.call("HGET", c, "agent") or ""
emit({type = "message", conversation = conv, channel = channel, direction = "in",
  message = contact, customer = customer, agent = agent, provider_id = provider_id})
return {outcome, conv, customer, redis.call("HGET", c, "queue")}
