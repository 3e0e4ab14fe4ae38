-- Wrap-up ends (its timer, or the agent says so): the slot goes back.
-- ARGV: agent, conversation.
local agent, conv = ARGV[1], ARGV[2]
redis.call("ZREM", timers_key(), "wrap:" .. agent .. ":" .. conv)
local channel = redis.call("HGET", conversation_key(conv), "channel") or ""
if not release_slot(agent, conv, channel) then return 0 end
emit({type = "wrapped_up", conversation = conv, channel = channel, agent = agent})
return 1
