-- Removes the records of jobs that finished more than `age` ago, at most `limit` of
-- them per call (retention also trims as outcomes are recorded; this is for vacuums).
-- KEYS: 1 done
-- ARGV: 1 prefix, 2 age (ms), 3 limit
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms() - tonumber(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('DEL', job_key(ARGV[1], id))
end
if #ids > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1)
end
return #ids
