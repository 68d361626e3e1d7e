-- Delete a thread and its history. UNLINK frees a long history off the main thread.
-- KEYS: meta, history
-- ARGV: idx (index prefix, '' = indexing off), id (the thread's)
-- Replies:
--   {'OK'}                          deleted
--   {'NOT_FOUND'}                   no such thread
-- On OK, wakes the thread's watchers, who find it gone (includes/wake.lua).
--- @include "includes/unindex_thread"
--- @include "includes/wake"
local meta, hist = KEYS[1], KEYS[2]
local idx, id = ARGV[1], ARGV[2]

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
redis.call('UNLINK', meta, hist)
unindex_thread(idx, id)
wake(meta, 'deleted') -- watchers read, find no thread and end their streams
return {'OK'}
