-- Adds jobs in one round trip.
-- KEYS: 1-4 the job hashes (see now.lua), 5 ready list, 6 delayed zset,
--       7 wake-up marker zset, then the idempotency keys of the jobs that have one
-- ARGV: 1 idempotency-key lifetime (ms), then five values per job:
--       id, payload, delay (ms), maximum attempts,
--       the position in KEYS of its idempotency key (0 for none)
-- Returns one integer per job: 1 added, 0 skipped (its id or idempotency key exists).
local idempotency_ttl = ARGV[1]
local now = now_ms()
local added = {}
local woke = false
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  local idempotency_key = tonumber(ARGV[i + 4])
  local fresh = redis.call('HEXISTS', JOBS, id) == 0
  if fresh and idempotency_key > 0 then
    fresh = redis.call('SET', KEYS[idempotency_key], id, 'NX', 'PX', idempotency_ttl) ~= false
  end
  if fresh then
    redis.call('HSET', PAYLOAD, id, ARGV[i + 1])
    local delay = tonumber(ARGV[i + 2])
    if delay > 0 then
      write_job(id, 'delayed', 0, ARGV[i + 3])
      redis.call('ZADD', KEYS[6], due_at(now, delay), id)
    else
      write_job(id, 'ready', 0, ARGV[i + 3])
      redis.call('LPUSH', KEYS[5], id)
    end
    woke = true
    added[#added + 1] = 1
  else
    added[#added + 1] = 0
  end
end
if woke then
  redis.call('ZADD', KEYS[7], 0, 'wake')
end
return added
