-- Record a customer's answer to a survey: a rating 1-5 (once: the first one counts), or a
-- comment after it (once). Checked and recorded in one step, so two answers racing (two
-- tabs, a link clicked twice, a text and a button) count one. A rating is, in the same
-- step: the conversation's survey_rating, the day's figures of its queue and agent (on the
-- day the survey was sent: `day`, which the caller read from the conversation and this
-- script checks), the customer's pending survey cleared, a comment on the comments stream,
-- a low rating's follow-up for a supervisor, the answer in the history and a
-- survey_result event.
-- A text reply from the inbound stream (`entry_id` given) is a rating only while the
-- survey is the customer's pending one and they have no other conversation open; then
-- its stream entry is acknowledged here, as intake.lua acknowledges the contacts it
-- stores (a no-longer-pending entry was recorded before: "duplicate"). Anything else
-- ("none", "expired") leaves the entry for routing as an ordinary message.
-- ARGV: mode (rate | comment), conversation, ident (the answering address as an identity,
-- "" when the caller proved who answers: a signed link), match ("pending": the survey must
-- be the customer's pending one, as for a text reply; "owner": theirs), rating, comment, low (the tenant's low
-- rating), day, day key, comments stream key, follow-ups key, history entry (MessagePack),
-- inbound stream key, group, consumer, entry id ("" for none).
-- Returns {outcome, rating}: rated | commented | already | none | expired | duplicate | mismatch.
local mode, conv, ident, match, rating = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local comment, low, day, day_key, comments = ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local followups, entry, inbound, group, consumer, entry_id = ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16]
local COMMENTS_MAXLEN = "10000"
local c = conversation_key(conv)
local f = redis.call("HMGET", c, "survey", "customer", "queue", "agent", "survey_until", "survey_day",
  "survey_rating", "survey_comment", "survey_channel", "survey_sent_at")
local survey, customer, queue, agent, answer_until, sent_day = f[1], f[2], f[3] or "", f[4] or "", f[5], f[6]
local rated, commented, channel, sent_at = f[7], f[8], f[9] or "", f[10] or "0"
if (survey ~= "sent" and survey ~= "rated") or not customer then return {"none", ""} end
if ident ~= "" and redis.call("HGET", identities_key(), ident) ~= customer then return {"none", ""} end
if match == "pending" then
  local cust = hgetall(customer_key(customer))
  if cust.survey ~= conv or (cust.open_conv and cust.open_conv ~= "") then return {"none", ""} end
end
if NOW > tonumber(answer_until or 0) then return {"expired", rated or ""} end
if sent_day ~= day then return {"mismatch", ""} end
if mode == "rate" and rated then return {"already", rated} end
if mode == "comment" and (not rated or commented) then return {rated and "already" or "none", rated or ""} end
if entry_id ~= "" then
  if #redis.call("XPENDING", inbound, group, entry_id, entry_id, 1, consumer) == 0 then return {"duplicate", ""} end
  redis.call("XACK", inbound, group, entry_id)
end

local function count(field, by)
  if queue ~= "" then redis.call("HINCRBY", day_key, "q:" .. queue .. ":" .. field, by) end
  if agent ~= "" then redis.call("HINCRBY", day_key, "a:" .. agent .. ":" .. field, by) end
end

local is_low = false
if mode == "rate" then
  rated = S(rating)
  redis.call("HSET", c, "survey", "rated", "survey_rating", rated, "survey_rated_at", NOW_S)
  if customer and redis.call("HGET", customer_key(customer), "survey") == conv then
    redis.call("HDEL", customer_key(customer), "survey")
  end
  count("answered", 1)
  count("sum", rating)
  count("r" .. rated, 1)
  if rating >= 4 then count("good", 1) end
  is_low = rating <= low
  if is_low then
    redis.call("HSET", c, "survey_followup", "open")
    redis.call("ZADD", followups, NOW_S, conv)
  end
else
  rating = tonumber(rated)
end
if comment ~= "" then
  redis.call("HSET", c, "survey_comment", comment)
  count("comments", 1)
  redis.call("XADD", comments, "MAXLEN", "~", COMMENTS_MAXLEN, "*", "conversation", conv, "queue", queue,
    "agent", agent, "rating", S(rating), "comment", comment, "day", day)
end
redis.call("RPUSH", conversation_log_key(conv), entry)
emit({type = "survey_result", conversation = conv, channel = channel, rating = rating, comment = comment,
  queue = queue, agent = agent, low = is_low, sent_at = tonumber(sent_at)})
return {mode == "rate" and "rated" or "commented", S(rating)}
