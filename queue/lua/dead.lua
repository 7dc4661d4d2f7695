-- Operator actions on the dead set, bounded per call.
-- KEYS: 1-4 the job hashes (see now.lua), 5 ready, 6 marker, 7 dead
-- ARGV: 1 action ('replay' | 'purge'), 2 limit, then optional ids
--       (no ids: the oldest `limit` dead jobs)
-- Returns how many jobs were replayed or purged.
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[7], 0, tonumber(ARGV[2]) - 1)
end
local count = 0
local purged = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[7], id) == 1 then
    local state, _, max = read_job(id)
    if ARGV[1] == 'replay' and state then
      write_job(id, 'ready', 0, max)
      redis.call('LPUSH', KEYS[5], id)
    else
      purged[#purged + 1] = id
    end
    count = count + 1
  end
end
delete_jobs(purged)
if count > 0 and ARGV[1] == 'replay' then
  redis.call('ZADD', KEYS[6], 0, 'wake')
end
return count
