-- Extends the leases this worker still holds, in one round trip.
-- KEYS: 1-4 the job hashes (see now.lua), 5 active
-- ARGV: 1 owner, 2 lease (ms), then pairs: id, attempt
-- Returns the ids whose lease this worker no longer holds.
local deadline = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local _, attempt = read_job(id)
  if redis.call('HGET', OWNER, id) == ARGV[1] and attempt == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[5], 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
