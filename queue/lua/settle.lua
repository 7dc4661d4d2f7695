-- Records the outcome of many deliveries in one round trip. A delivery counts only if
-- this worker still holds its lease for that attempt; otherwise the job was handed to
-- another worker and this outcome is ignored (it is never acknowledged twice).
-- KEYS: 1 ready, 2 delayed, 3 active, 4 marker, 5 dead, 6 done
-- ARGV: 1 prefix, 2 owner, 3 finished jobs kept (count), 4 finished jobs kept (ms),
--       5 dead jobs kept (count), 6 dead jobs kept (ms),
--       then five values per delivery: id, attempt, outcome, delay (ms), text
--       outcome: 'done' (text = result), 'retry' (after delay; text = error),
--                'dead' (text = error), 'release' (handed back unstarted)
-- Returns one integer per delivery: 1 recorded, 0 stale.
local prefix = ARGV[1]
local owner = ARGV[2]
local keep_done = tonumber(ARGV[3])
local keep_done_ms = tonumber(ARGV[4])
local keep_dead = tonumber(ARGV[5])
local keep_dead_ms = tonumber(ARGV[6])
local now = now_ms()
local recorded = {}
local woke = false
for i = 7, #ARGV, 5 do
  local id = ARGV[i]
  local key = job_key(prefix, id)
  local held = redis.call('HMGET', key, 'o', 'a')
  if held[1] == owner and held[2] == ARGV[i + 1] then
    redis.call('ZREM', KEYS[3], id)
    local outcome = ARGV[i + 2]
    if outcome == 'done' then
      if keep_done > 0 then
        redis.call('HSET', key, 's', 'done', 'r', ARGV[i + 4], 'f', now)
        redis.call('HDEL', key, 'o', 'd')
        redis.call('PEXPIRE', key, keep_done_ms)
        redis.call('ZADD', KEYS[6], now, id)
      else
        redis.call('DEL', key)
      end
    elseif outcome == 'retry' then
      redis.call('HSET', key, 's', 'delayed', 'e', ARGV[i + 4])
      redis.call('HDEL', key, 'o')
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i + 3]), id)
      woke = true
    elseif outcome == 'release' then
      redis.call('HINCRBY', key, 'a', -1)
      redis.call('HSET', key, 's', 'ready')
      redis.call('HDEL', key, 'o')
      redis.call('RPUSH', KEYS[1], id)
      woke = true
    else
      redis.call('HSET', key, 's', 'dead', 'e', ARGV[i + 4], 'f', now)
      redis.call('HDEL', key, 'o')
      redis.call('ZADD', KEYS[5], now, id)
    end
    recorded[#recorded + 1] = 1
  else
    recorded[#recorded + 1] = 0
  end
end
if woke then
  redis.call('ZADD', KEYS[4], 0, 'wake')
end

-- Retention: each call removes at most as many old records as it added, plus those
-- past their age (whose hashes already expired), so the sets stay bounded.
local function trim(set, keep, keep_ms)
  local excess = redis.call('ZCARD', set) - keep
  if excess > 0 then
    local oldest = redis.call('ZPOPMIN', set, excess)
    for j = 1, #oldest, 2 do
      redis.call('DEL', job_key(prefix, oldest[j]))
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', set, '-inf', now - keep_ms, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    redis.call('DEL', job_key(prefix, id))
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYRANK', set, 0, #expired - 1)
  end
end
trim(KEYS[6], keep_done, keep_done_ms)
trim(KEYS[5], keep_dead, keep_dead_ms)
return recorded
