-- Forgets jobs that finished more than `age` ago, at most `limit` per call (retention
-- also trims as outcomes are recorded; this is for vacuums). Finished jobs keep no
-- hash, only their place in the done set and their result, if any.
-- KEYS: 1 done
-- ARGV: 1 prefix, 2 age (ms), 3 limit
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms() - tonumber(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[3]))
if #ids > 0 then
  redis.call('HDEL', ARGV[1] .. 'results', unpack(ids))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1)
end
return #ids
