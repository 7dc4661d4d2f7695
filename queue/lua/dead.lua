-- Operator actions on the dead set, bounded per call.
-- KEYS: 1 ready, 2 marker, 3 dead
-- ARGV: 1 prefix, 2 action ('replay' | 'purge'), 3 limit, then optional ids
--       (no ids: the oldest `limit` dead jobs)
-- Returns how many jobs were replayed or purged.
local prefix = ARGV[1]
local ids = {}
if #ARGV > 3 then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
local count = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    local key = job_key(prefix, id)
    if ARGV[2] == 'replay' and redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'a', 0, 's', 'ready')
      redis.call('HDEL', key, 'f')
      redis.call('PERSIST', key)
      redis.call('LPUSH', KEYS[1], id)
    else
      redis.call('DEL', key)
    end
    count = count + 1
  end
end
if count > 0 and ARGV[2] == 'replay' then
  redis.call('ZADD', KEYS[2], 0, 'wake')
end
return count
