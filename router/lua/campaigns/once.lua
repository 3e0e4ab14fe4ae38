-- Count something once per recipient: a flag beside its status, then the counter, in
-- one step (a result reported twice counts once).
-- ARGV: status key, stats key, flag field, counter, the A/B variant's counter prefix or "",
-- how much to add (a promise adds its cents), the flag's value.
local status, stats, flag, counter, variant = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local by, value = tonumber(ARGV[6]), ARGV[7]
if redis.call("HSETNX", status, flag, value) == 0 then return 0 end
redis.call("HINCRBY", stats, counter, by)
if variant ~= "" then redis.call("HINCRBY", stats, variant .. counter, by) end
return 1
