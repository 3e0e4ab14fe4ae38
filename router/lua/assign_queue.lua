-- Offer a queue's waiting conversations, best first, to ready agents (lib.lua's
-- offer_round). ARGV: queue, how many waiting conversations to look at.
local queue, lookahead = ARGV[1], tonumber(ARGV[2])
return offer_round(queue, lookahead)
