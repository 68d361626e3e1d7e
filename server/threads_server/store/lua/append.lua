-- Append entries to a thread's history, all or nothing.
-- KEYS: meta, history
-- ARGV: idx (index prefix, '' = indexing off), id (the thread's), expected_length ('' when
--       unset), now (us), max_length (max_history_length), first_entry... (entry1, entry2, ...)
-- Replies:
--   {'OK', new_length}
--   {'NOT_FOUND'}                   no such thread
--   {'LENGTH_MISMATCH', length}     expected_length is set and is not the length
--   {'TOO_LONG', length}            the entries would pass max_history_length
-- On OK, wakes the thread's watchers with the new length (includes/wake.lua).
--- @include "includes/apply_expiry"
--- @include "includes/call_sliced"
--- @include "includes/wake"
local meta, hist = KEYS[1], KEYS[2]
local idx, id = ARGV[1], ARGV[2]
local expected_length, now, max_length = ARGV[3], ARGV[4], tonumber(ARGV[5])
local first_entry = 6

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
local length = redis.call('LLEN', hist)
if expected_length ~= '' and tonumber(expected_length) ~= length then
  return {'LENGTH_MISMATCH', length}
end
if length + #ARGV - first_entry + 1 > max_length then
  return {'TOO_LONG', length}
end
local new_length = call_sliced('RPUSH', hist, ARGV, first_entry, #ARGV)
if length == 0 then
  -- The first entries create the history key: it takes the thread's expiry, if any.
  apply_expiry(meta, hist, redis.call('HGET', meta, 'expire_at_ms') or '')
end
redis.call('HSET', meta, 'updated_at', now)
if idx ~= '' then
  redis.call('ZADD', idx .. 'u', 'XX', now, id) -- only updated_at moves
end
wake(meta, tostring(new_length)) -- the new length: a watcher already there need not read
return {'OK', new_length}
