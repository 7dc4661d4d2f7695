-- Adds jobs in one round trip.
-- KEYS: 1 ready list, 2 delayed zset, 3 wake-up marker zset
-- ARGV: 1 key prefix, 2 idempotency-key lifetime (ms), then five values per job:
--       id, payload, delay (ms), maximum attempts, idempotency key ('' for none)
-- Returns one integer per job: 1 added, 0 skipped (its id or idempotency key exists).
local prefix = ARGV[1]
local idempotency_ttl = ARGV[2]
local now = now_ms()
local added = {}
local woke = false
for i = 3, #ARGV, 5 do
  local id = ARGV[i]
  local key = job_key(prefix, id)
  local idempotency_key = ARGV[i + 4]
  local fresh = redis.call('EXISTS', key) == 0
  if fresh and idempotency_key ~= '' then
    fresh = redis.call('SET', prefix .. 'idem:' .. idempotency_key, id, 'NX', 'PX', idempotency_ttl) ~= false
  end
  if fresh then
    local delay = tonumber(ARGV[i + 2])
    if delay > 0 then
      redis.call('HSET', key, 'd', ARGV[i + 1], 'a', 0, 'm', ARGV[i + 3], 's', 'delayed', 'c', now)
      redis.call('ZADD', KEYS[2], due_at(now, delay), id)
    else
      redis.call('HSET', key, 'd', ARGV[i + 1], 'a', 0, 'm', ARGV[i + 3], 's', 'ready', 'c', now)
      redis.call('LPUSH', KEYS[1], id)
    end
    woke = true
    added[#added + 1] = 1
  else
    added[#added + 1] = 0
  end
end
if woke then
  redis.call('ZADD', KEYS[3], 0, 'wake')
end
return added
