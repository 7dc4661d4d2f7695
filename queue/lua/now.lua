-- Shared prelude of every script (prepended by the Rust side): the server's clock in
-- milliseconds, so that producers and workers on different hosts agree on "now".
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function job_key(prefix, id)
  return prefix .. 'job:' .. id
end
