-- The stored state of a thread, as the server builds a Thread message from it:
-- {history_length, {field, value, ...}}.
local function thread_state(meta_key, history_key)
  return {redis.call('LLEN', history_key), redis.call('HGETALL', meta_key)}
end
