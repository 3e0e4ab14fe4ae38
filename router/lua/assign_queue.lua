-- Offer a queue's waiting conversations, best first, to ready agents (lib.lua's
-- offer_round). ARGV: queue, how many waiting conversations to look at.
return offer_round(ARGV[1], tonumber(ARGV[2]))
