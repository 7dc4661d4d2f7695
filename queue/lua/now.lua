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
local function job_key(prefix, id)
  return prefix .. 'job:' .. id
end
