-- Merge metadata fields over a thread's stored ones, and/or change its expiry.
-- KEYS: meta, history
-- ARGV: idx (index prefix, '' = indexing off), id (the thread's), now (us), expire_ms ('' =
--       keep, '0' = remove), max_metadata (max_metadata_bytes), first_field... (field1,
--       value1, ...)
-- Replies:
--   {'OK', state}                   the updated thread
--   {'NOT_FOUND'}                   no such thread
--   {'METADATA_TOO_LARGE', size}    the merged metadata would pass max_metadata_bytes
-- On OK with a new expiry, wakes the thread's watchers, who read it (includes/wake.lua):
-- they look again when it is due, and a past one has deleted the thread already.
--- @include "includes/call_sliced"
--- @include "includes/oversized_metadata"
--- @include "includes/record_expiry"
--- @include "includes/apply_expiry"
--- @include "includes/thread_state"
--- @include "includes/index_thread"
--- @include "includes/wake"
local meta, hist = KEYS[1], KEYS[2]
local idx, id = ARGV[1], ARGV[2]
local now, expire_ms, max_metadata = ARGV[3], ARGV[4], tonumber(ARGV[5])
local first_field = 6

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
local oversized = oversized_metadata(meta, ARGV, first_field, max_metadata)
if oversized then
  return {'METADATA_TOO_LARGE', oversized}
end
redis.call('HSET', meta, 'updated_at', now)
call_sliced('HSET', meta, ARGV, first_field, #ARGV)
record_expiry(meta, expire_ms)
local state = thread_state(meta, hist)
apply_expiry(meta, hist, expire_ms)
index_thread(idx, id, meta, 'update', expire_ms)
if expire_ms ~= '' then
  wake(meta, 'expiry')
end
return {'OK', state}
