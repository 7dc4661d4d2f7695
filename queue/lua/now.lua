-- Shared prelude of every script (prepended by the Rust side): the server's clock in
-- milliseconds, so that producers and workers on different hosts agree on "now".
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- When a job delayed by `delay` ms from `now` is due. TIME is read down to whole
-- milliseconds, so up to one has already passed since `now` began; counting from the
-- next one means a delayed job never runs early.
local function due_at(now, delay)
  return now + 1 + delay
end
-- A job's data lives in four hashes keyed by its id, which every script that touches
-- jobs takes first in KEYS (a script never builds a key name, so a Redis Cluster
-- routes it to the node holding every key it touches): its payload; its state
-- ('ready', 'delayed', 'active' or 'dead'), attempts so far and maximum attempts,
-- packed in one field ('ready 0 5'), which keeps a waiting job's memory near what a
-- hash per job took (three fields of their own would almost double it); its lease
-- owner (while active); its last error.
local PAYLOAD, JOBS, OWNER, ERROR = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- A job's state, attempts and maximum; nothing for a job the queue does not hold.
local function read_job(id)
  local packed = redis.call('HGET', JOBS, id)
  if not packed then return nil end
  local state, attempt, max = string.match(packed, '^(%a+) (%d+) (%d+)$')
  return state, tonumber(attempt), tonumber(max)
end
local function write_job(id, state, attempt, max)
  redis.call('HSET', JOBS, id, state .. ' ' .. attempt .. ' ' .. max)
end
-- Removes jobs from every per-job hash, a thousand fields per call (Lua's stack bounds
-- `unpack`).
local function delete_jobs(ids)
  for first = 1, #ids, 1000 do
    local last = math.min(first + 999, #ids)
    for _, hash in ipairs({PAYLOAD, JOBS, OWNER, ERROR}) do
      redis.call('HDEL', hash, unpack(ids, first, last))
    end
  end
end
