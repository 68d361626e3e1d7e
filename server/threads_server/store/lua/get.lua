-- Read a thread's meta HASH and history length in one consistent step.
-- KEYS: meta, history
-- ARGV: none
-- Replies:
--   {'OK', state}                   {history_length, {field, value, ...}}
--   {'NOT_FOUND'}                   no such thread
--- @include "includes/thread_state"
local meta, hist = KEYS[1], KEYS[2]

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
return {'OK', thread_state(meta, hist)}
