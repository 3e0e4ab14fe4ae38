-- Evict a closed conversation from Redis once the archive holds it: its hash, history,
-- declines, reservations, replies' delivery records and provider ids, and its place in
-- the customer's conversations, all in one step, and only if Redis still holds exactly
-- what the archive committed (`held`: the snapshot it wrote, spelt as
-- router/records/snapshot.py spells it) and the conversation closed before the cut-off.
-- A conversation that changed since (a late delivery report, a note, a merge) is left
-- for the next archive.
-- KEYS: base.
-- ARGV: conversation, what the archive holds of it, closed before (ms), the replies' ids (one a line), the
-- customers' email Message-IDs (one a line), then the conversation hash's field names in the order `held`
-- spells them. The email thread references that lead to it go too (the threads hash: its token, its
-- replies' and its customers' Message-IDs), each only while it still names this conversation: a mail
-- answering it after this opens a new conversation, as a mail to a closed one does.
-- Returns "evicted", "gone" (nothing to evict), "open", "recent" or "changed".
local conv = ARGV[1]
local held = ARGV[2]
local closed_before = ARGV[3]
local message_ids = ARGV[4]
local thread_refs = ARGV[5]
local FIELDS_AT = 5
local c = conversation_key(conv)
local count = redis.call("HLEN", c)
if count == 0 then return "gone" end
if count ~= #ARGV - FIELDS_AT then return "changed" end
local names = {}
for i = FIELDS_AT + 1, #ARGV do names[#names + 1] = ARGV[i] end
local values = redis.call("HMGET", c, unpack(names))
local parts, record = {}, {}
for i, name in ipairs(names) do
  local value = values[i]
  if not value then return "changed" end
  record[name] = value
  parts[#parts + 1] = #name .. ":" .. name .. #value .. ":" .. value
end
if record.state ~= "closed" then return "open" end
if tonumber(record.closed_at or "0") >= tonumber(closed_before) then return "recent" end
local log = conversation_log_key(conv)
parts[#parts + 1] = tostring(redis.call("LLEN", log))
local replies, refs = {}, {}
for id in string.gmatch(message_ids, "[^\n]+") do
  replies[#replies + 1] = id
  local f = redis.call("HMGET", delivery_key(id), "status", "error", "provider_id", "attempts")
  for j = 1, 4 do parts[#parts + 1] = #(f[j] or "") .. ":" .. (f[j] or "") end
  if f[3] and f[3] ~= "" then refs[#refs + 1] = {f[3], id} end
end
if table.concat(parts, "\n") ~= held then return "changed" end

redis.call("DEL", c, log, conversation_declined_key(conv))
for n = 1, tonumber(record.attempts or "0") do redis.call("DEL", reservation_key(conv .. "." .. n)) end
for _, id in ipairs(replies) do redis.call("DEL", delivery_key(id)) end
for _, ref in ipairs(refs) do  -- a provider's id, unless it has come to name another message
  if redis.call("GET", provider_message_key(ref[1])) == ref[2] then redis.call("DEL", provider_message_key(ref[1])) end
end
local threads = threads_key()
local function unthread(ref)
  if ref ~= "" and redis.call("HGET", threads, ref) == conv then redis.call("HDEL", threads, ref) end
end
if record.email_token then unthread("token:" .. record.email_token) end
for _, ref in ipairs(refs) do unthread(ref[1]) end  -- an email reply's provider id is its Message-ID
for ref in string.gmatch(thread_refs, "[^\n]+") do unthread(ref) end
local customer = record.customer
if customer and customer ~= "" then
  redis.call("ZREM", customer_conversations_key(customer), conv)
end
return "evicted"
