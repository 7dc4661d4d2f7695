-- Forgets jobs that finished more than `age` ago, at most `limit` per call (retention
-- also trims as outcomes are recorded; this is for vacuums). Finished jobs keep no
-- data in the job hashes, only their place in the done set and their result, if any.
-- KEYS: 1-4 the job hashes (see now.lua; untouched), 5 done, 6 results
-- ARGV: 1 age (ms), 2 limit
local ids = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now_ms() - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('HDEL', KEYS[6], unpack(ids))
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, #ids - 1)
end
return #ids
