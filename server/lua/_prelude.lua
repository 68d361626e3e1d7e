-- Helpers shared by every script; server/scripts.py prepends this file to each one.

-- RPUSH args[first..#args] onto key in slices (Lua's unpack has a stack limit).
-- Returns the list's length afterwards.
local function push_all(key, args, first)
  local length = redis.call('LLEN', key)
  local last_arg = #args
  local i = first
  while i <= last_arg do
    local j = math.min(i + 999, last_arg)
    length = redis.call('RPUSH', key, unpack(args, i, j))
    i = j + 1
  end
  return length
end

-- The stored state of a thread, as the server builds a Thread message from it:
-- {history_length, {field, value, ...}}.
local function thread_state(meta_key, history_key)
  return {redis.call('LLEN', history_key), redis.call('HGETALL', meta_key)}
end
