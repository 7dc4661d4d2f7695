-- Hands up to `count` jobs to one worker under a lease. Every step is bounded: lapsed
-- leases and due delayed jobs are moved in batches of at most `reap`/`promote`, so the
-- cost never grows with the number of jobs the queue holds.
-- KEYS: 1-4 the job hashes (see now.lua), 5 ready, 6 delayed,
--       7 active (lease deadlines), 8 marker, 9 dead,
--       10 this fetch's record (the ids it leased, for a retry after a lost answer),
--       11 the record of this worker's previous fetch, whose answer arrived
-- ARGV: 1 count, 2 lease (ms), 3 owner, 4 promote batch, 5 reap batch,
--       6 '1' to remember this fetch in its record ('' for a fetch that will not be
--         retried), 7 '1' to forget the previous fetch's record
-- Returns {wake_in_ms (-1: nothing scheduled), ready_left, id, payload, attempt, max, ...}
local ready, delayed, active, marker, dead = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local record = KEYS[10]
local remember = ARGV[6] == '1'
local now = now_ms()
local owner = ARGV[3]
if ARGV[7] == '1' then
  -- Its answer arrived, so it will never be retried: forget it now rather than let it
  -- expire, which keeps one record per worker.
  redis.call('DEL', KEYS[11])
end

-- Leases that lapsed: the worker holding them stopped renewing (crashed or cut off).
local lapsed = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(lapsed) do
  redis.call('ZREM', active, id)
  local state, attempt, max = read_job(id)
  if state then
    redis.call('HDEL', OWNER, id)
    if attempt >= max then
      write_job(id, 'dead', attempt, max)
      redis.call('HSET', ERROR, id, 'lease lapsed on the last attempt')
      redis.call('ZADD', dead, now, id)
    else
      write_job(id, 'ready', attempt, max)
      redis.call('HSET', ERROR, id, 'lease lapsed')
      -- To the head of the line: it has waited already.
      redis.call('RPUSH', ready, id)
    end
  end
end

-- Delayed jobs that are due.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', delayed, 0, #due - 1)
  for _, id in ipairs(due) do
    local state, attempt, max = read_job(id)
    if state then
      write_job(id, 'ready', attempt, max)
      redis.call('LPUSH', ready, id)
    end
  end
end

local out = {-1, 0}
-- A retry of a fetch whose answer was lost (a cut connection, a timeout): the same jobs
-- again, those this worker still holds, rather than leaving them to their lease.
local again = {}
if remember then
  again = redis.call('LRANGE', record, 0, -1)
end
for _, id in ipairs(again) do
  local state, attempt, max = read_job(id)
  if state == 'active' and redis.call('HGET', OWNER, id) == owner then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', PAYLOAD, id)
    out[#out + 1] = attempt
    out[#out + 1] = max
  end
end
local ids = false
if #again == 0 then
  ids = redis.call('RPOP', ready, tonumber(ARGV[1]))
end
if ids then
  local deadline = now + tonumber(ARGV[2])
  local leases = {}
  for _, id in ipairs(ids) do
    local state, attempt, max = read_job(id)
    -- A job purged while it waited has no data left; it is simply dropped.
    if state then
      attempt = attempt + 1
      write_job(id, 'active', attempt, max)
      redis.call('HSET', OWNER, id, owner)
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', PAYLOAD, id)
      out[#out + 1] = attempt
      out[#out + 1] = max
    end
  end
  if #leases > 0 then
    redis.call('ZADD', active, unpack(leases))
  end
  if #leases > 0 and remember then
    -- Remembered for a retry of this fetch, as long as the leases last.
    for j = 2, #leases, 2 do
      redis.call('RPUSH', record, leases[j])
    end
    redis.call('PEXPIRE', record, tonumber(ARGV[2]))
  end
end

local left = redis.call('LLEN', ready)
out[2] = left
if left > 0 then
  -- Wake another idle worker: there is more than this one took.
  redis.call('ZADD', marker, 0, 'wake')
end
local wake = -1
local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if next_due[2] then wake = tonumber(next_due[2]) end
local next_lapse = redis.call('ZRANGE', active, 0, 0, 'WITHSCORES')
if next_lapse[2] and (wake < 0 or tonumber(next_lapse[2]) < wake) then wake = tonumber(next_lapse[2]) end
if wake >= 0 then
  out[1] = math.max(wake - now, 0)
end
return out
