-- Hands up to `count` jobs to one worker under a lease. Every step is bounded: lapsed
-- leases and due delayed jobs are moved in batches of at most `reap`/`promote`, so the
-- cost never grows with the number of jobs the queue holds.
-- KEYS: 1 ready, 2 delayed, 3 active (lease deadlines), 4 marker, 5 dead
-- ARGV: 1 prefix, 2 count, 3 lease (ms), 4 owner, 5 promote batch, 6 reap batch,
--       7 fetch id (unique per fetch; a retry after a lost answer reuses it; '' for a
--         fetch that will not be retried, which is then not remembered),
--       8 the id of this worker's previous fetch, whose answer arrived ('' for none)
-- Returns {wake_in_ms (-1: nothing scheduled), ready_left, id, payload, attempt, max, ...}
local prefix = ARGV[1]
local now = now_ms()
local owner = ARGV[4]
local record = prefix .. 'fetch:' .. ARGV[7]
if ARGV[8] ~= '' then
  -- Its answer arrived, so it will never be retried: forget it now rather than let it
  -- expire, which keeps one record per worker.
  redis.call('DEL', prefix .. 'fetch:' .. ARGV[8])
end

-- Leases that lapsed: the worker holding them stopped renewing (crashed or cut off).
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[3], id)
  local key = job_key(prefix, id)
  local state = redis.call('HMGET', key, 'a', 'm')
  if state[1] then
    redis.call('HDEL', key, 'o')
    if tonumber(state[1]) >= tonumber(state[2]) then
      redis.call('HSET', key, 's', 'dead', 'e', 'lease lapsed on the last attempt', 'f', now)
      redis.call('ZADD', KEYS[5], now, id)
    else
      redis.call('HSET', key, 's', 'ready', 'e', 'lease lapsed')
      -- To the head of the line: it has waited already.
      redis.call('RPUSH', KEYS[1], id)
    end
  end
end

-- Delayed jobs that are due.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, #due - 1)
  for _, id in ipairs(due) do
    redis.call('HSET', job_key(prefix, id), 's', 'ready')
    redis.call('LPUSH', KEYS[1], id)
  end
end

local out = {-1, 0}
-- A retry of a fetch whose answer was lost (a cut connection, a timeout): the same jobs
-- again, those this worker still holds, rather than leaving them to their lease.
local again = {}
if ARGV[7] ~= '' then
  again = redis.call('LRANGE', record, 0, -1)
end
for _, id in ipairs(again) do
  local job = redis.call('HMGET', job_key(prefix, id), 'd', 'm', 'a', 'o', 's')
  if job[1] and job[4] == owner and job[5] == 'active' then
    out[#out + 1] = id
    out[#out + 1] = job[1]
    out[#out + 1] = tonumber(job[3])
    out[#out + 1] = tonumber(job[2])
  end
end
local ids = false
if #again == 0 then
  ids = redis.call('RPOP', KEYS[1], tonumber(ARGV[2]))
end
if ids then
  local deadline = now + tonumber(ARGV[3])
  local leases = {}
  for _, id in ipairs(ids) do
    local key = job_key(prefix, id)
    local job = redis.call('HMGET', key, 'd', 'm', 'a')
    -- A job purged while it waited has no data left; it is simply dropped.
    if job[1] then
      local attempt = tonumber(job[3]) + 1
      redis.call('HSET', key, 'a', attempt, 's', 'active', 'o', owner)
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = job[1]
      out[#out + 1] = attempt
      out[#out + 1] = tonumber(job[2])
    end
  end
  if #leases > 0 then
    redis.call('ZADD', KEYS[3], unpack(leases))
  end
  if #leases > 0 and ARGV[7] ~= '' then
    -- Remembered for a retry of this fetch, as long as the leases last.
    for j = 2, #leases, 2 do
      redis.call('RPUSH', record, leases[j])
    end
    redis.call('PEXPIRE', record, tonumber(ARGV[3]))
  end
end

local left = redis.call('LLEN', KEYS[1])
out[2] = left
if left > 0 then
  -- Wake another idle worker: there is more than this one took.
  redis.call('ZADD', KEYS[4], 0, 'wake')
end
local wake = -1
local next_due = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if next_due[2] then wake = tonumber(next_due[2]) end
local next_lapse = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if next_lapse[2] and (wake < 0 or tonumber(next_lapse[2]) < wake) then wake = tonumber(next_lapse[2]) end
if wake >= 0 then
  out[1] = math.max(wake - now, 0)
end
return out
