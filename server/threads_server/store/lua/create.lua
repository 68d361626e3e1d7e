-- Create a thread with its metadata and initial history, all or nothing.
-- KEYS: meta, history[, create request record]
-- ARGV: idx (index prefix, '' = indexing off), id (the thread's), now (us), owner ('' with
--       auth off), expire_ms ('0' = none), request_id, fingerprint, record_ttl (s),
--       n_meta (the number of metadata arguments that follow),
--       first_field... (field1, value1, ..., then entry1, entry2, ...)
-- Replies:
--   {'OK'}                          created
--   {'EXISTS', state}               the id is taken; the existing thread, untouched
--   {'DUPLICATE', state}            this request_id already created this thread
--   {'REQUEST_ID_REUSED'}           this request_id created it with other parameters
--   {'DELETED'}                     this request_id created it; deleted or expired since
--- @include "includes/call_sliced"
--- @include "includes/record_expiry"
--- @include "includes/apply_expiry"
--- @include "includes/thread_state"
--- @include "includes/index_thread"
local meta, hist, record = KEYS[1], KEYS[2], KEYS[3]
local idx, id = ARGV[1], ARGV[2]
local now, owner, expire_ms, request_id, fingerprint, record_ttl =
  ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local n_meta = tonumber(ARGV[9])
local first_field = 10
local first_entry = first_field + n_meta

if record then
  local prior = redis.call('HMGET', record, 'request_id', 'fingerprint')
  if prior[1] == request_id then
    if prior[2] ~= fingerprint then
      return {'REQUEST_ID_REUSED'}
    end
    if redis.call('EXISTS', meta) == 0 then
      return {'DELETED'}
    end
    return {'DUPLICATE', thread_state(meta, hist)}
  end
end
if redis.call('EXISTS', meta) == 1 then
  return {'EXISTS', thread_state(meta, hist)}
end
redis.call('HSET', meta, 'created_at', now, 'updated_at', now)
if owner ~= '' then
  redis.call('HSET', meta, 'owner', owner)
end
call_sliced('HSET', meta, ARGV, first_field, first_entry - 1)
call_sliced('RPUSH', hist, ARGV, first_entry, #ARGV)
record_expiry(meta, expire_ms)
apply_expiry(meta, hist, expire_ms)
index_thread(idx, id, meta, 'new')
if record then
  redis.call('HSET', record, 'request_id', request_id, 'fingerprint', fingerprint)
  redis.call('EXPIRE', record, record_ttl)
end
return {'OK'}
