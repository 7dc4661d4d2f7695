-- Extends the leases this worker still holds, in one round trip.
-- KEYS: 1 active
-- ARGV: 1 prefix, 2 owner, 3 lease (ms), then pairs: id, attempt
-- Returns the ids whose lease this worker no longer holds.
local prefix = ARGV[1]
local deadline = now_ms() + tonumber(ARGV[3])
local lost = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local held = redis.call('HMGET', job_key(prefix, id), 'o', 'a')
  if held[1] == ARGV[2] and held[2] == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
