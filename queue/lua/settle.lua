-- Records the outcome of many deliveries in one round trip. A delivery counts only if
-- this worker still holds its lease for that attempt; otherwise the job was handed to
-- another worker and this outcome is ignored (it is never acknowledged twice).
-- KEYS: 1-4 the job hashes (see now.lua), 5 ready, 6 delayed, 7 active, 8 marker,
--       9 dead, 10 done, 11 results
-- ARGV: 1 owner, 2 finished jobs kept (count), 3 finished jobs kept (ms),
--       4 dead jobs kept (count), 5 dead jobs kept (ms),
--       then five values per delivery: id, attempt, outcome, delay (ms), text
--       outcome: 'done' (text = result), 'retry' (after delay; text = error),
--                'dead' (text = error), 'release' (handed back unstarted)
-- Returns one integer per delivery: 1 recorded, 0 stale.
local ready, delayed, active, marker, dead, done, results =
  KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local owner = ARGV[1]
local keep_done = tonumber(ARGV[2])
local keep_done_ms = tonumber(ARGV[3])
local keep_dead = tonumber(ARGV[4])
local keep_dead_ms = tonumber(ARGV[5])
local now = now_ms()
local recorded = {}
local finished = {}
local woke = false
for i = 6, #ARGV, 5 do
  local id = ARGV[i]
  local state, attempt, max = read_job(id)
  if redis.call('HGET', OWNER, id) == owner and attempt == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', active, id)
    -- The lease ends with any outcome (a repeated settlement of this delivery in the
    -- same call is then stale).
    redis.call('HDEL', OWNER, id)
    local outcome = ARGV[i + 2]
    if outcome == 'done' then
      -- A finished job keeps only its place in the done set (and its result, if any,
      -- in the results hash): its data goes at once (below, in one call per hash),
      -- which is most of the cost of a finished job in memory and in commands.
      finished[#finished + 1] = id
      if keep_done > 0 then
        redis.call('ZADD', done, now, id)
        if ARGV[i + 4] ~= '' then
          redis.call('HSET', results, id, ARGV[i + 4])
        end
      end
    elseif outcome == 'retry' then
      write_job(id, 'delayed', attempt, max)
      redis.call('HSET', ERROR, id, ARGV[i + 4])
      redis.call('ZADD', delayed, due_at(now, tonumber(ARGV[i + 3])), id)
      woke = true
    elseif outcome == 'release' then
      write_job(id, 'ready', attempt - 1, max)
      redis.call('RPUSH', ready, id)
      woke = true
    else
      write_job(id, 'dead', attempt, max)
      redis.call('HSET', ERROR, id, ARGV[i + 4])
      redis.call('ZADD', dead, now, id)
    end
    recorded[#recorded + 1] = 1
  else
    recorded[#recorded + 1] = 0
  end
end
delete_jobs(finished)
if woke then
  redis.call('ZADD', marker, 0, 'wake')
end

-- Retention: each call removes at most as many old records as it added, plus those
-- past their age, so the sets stay bounded. Finished jobs have no data left to delete.
local function forget_results(ids)
  if #ids > 0 then
    redis.call('HDEL', results, unpack(ids))
  end
end
local excess = redis.call('ZCARD', done) - keep_done
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', done, excess)
  local ids = {}
  for j = 1, #oldest, 2 do
    ids[#ids + 1] = oldest[j]
  end
  forget_results(ids)
end
local stale = redis.call('ZRANGEBYSCORE', done, '-inf', now - keep_done_ms, 'LIMIT', 0, 1000)
if #stale > 0 then
  forget_results(stale)
  redis.call('ZREMRANGEBYRANK', done, 0, #stale - 1)
end
excess = redis.call('ZCARD', dead) - keep_dead
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', dead, excess)
  local ids = {}
  for j = 1, #oldest, 2 do
    ids[#ids + 1] = oldest[j]
  end
  delete_jobs(ids)
end
local expired = redis.call('ZRANGEBYSCORE', dead, '-inf', now - keep_dead_ms, 'LIMIT', 0, 1000)
delete_jobs(expired)
if #expired > 0 then
  redis.call('ZREMRANGEBYRANK', dead, 0, #expired - 1)
end
return recorded
