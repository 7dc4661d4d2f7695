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
      -- A finished job keeps only its place in the done set (and its result, if any,
      -- in the results hash): the job's hash goes at once, which is most of the cost
      -- of a finished job in memory and in commands.
      redis.call('DEL', key)
      if keep_done > 0 then
        redis.call('ZADD', KEYS[6], now, id)
        if ARGV[i + 4] ~= '' then
          redis.call('HSET', prefix .. 'results', id, ARGV[i + 4])
        end
      end
    elseif outcome == 'retry' then
      redis.call('HSET', key, 's', 'delayed', 'e', ARGV[i + 4])
      redis.call('HDEL', key, 'o')
      redis.call('ZADD', KEYS[2], due_at(now, tonumber(ARGV[i + 3])), id)
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
-- past their age, so the sets stay bounded. Finished jobs have no hash left to delete.
local function forget_results(ids)
  if #ids > 0 then
    redis.call('HDEL', prefix .. 'results', unpack(ids))
  end
end
local excess = redis.call('ZCARD', KEYS[6]) - keep_done
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[6], excess)
  local ids = {}
  for j = 1, #oldest, 2 do
    ids[#ids + 1] = oldest[j]
  end
  forget_results(ids)
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now - keep_done_ms, 'LIMIT', 0, 1000)
if #stale > 0 then
  forget_results(stale)
  redis.call('ZREMRANGEBYRANK', KEYS[6], 0, #stale - 1)
end
excess = redis.call('ZCARD', KEYS[5]) - keep_dead
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[5], excess)
  for j = 1, #oldest, 2 do
    redis.call('DEL', job_key(prefix, oldest[j]))
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - keep_dead_ms, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('DEL', job_key(prefix, id))
end
if #expired > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, #expired - 1)
end
return recorded
