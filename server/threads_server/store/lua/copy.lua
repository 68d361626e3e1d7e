-- Copy a thread: the flagship operation. One script, so it is atomic: a concurrent
-- Append to the source is either wholly in the copy or wholly out.
-- The history is duplicated inside Redis with COPY (O(N) in C); nothing is read out.
--
-- KEYS: source meta, source history, copy meta, copy history[, request record]
-- ARGV: idx (index prefix, '' = indexing off), copy_id, source_id, now (us),
--       want (history_length, '' = all), fingerprint (of the request),
--       request_ttl (the request record's, s), expire_ms (the copy's, '0' = none),
--       max_length (max_history_length), max_metadata (max_metadata_bytes),
--       first_field... (field1, value1, ...: metadata merged over the source's)
-- Replies:
--   {'OK', state}                         the new copy
--   {'DUPLICATE', copy_id}                this request_id already made copy_id
--   {'REQUEST_ID_REUSED', copy_id}        this request_id was used with other parameters
--   {'NOT_FOUND'}                         no source thread
--   {'OUT_OF_RANGE', source_length}       history_length > source length
--   {'TOO_LONG', copy_length}             the copy would exceed max_history_length
--   {'METADATA_TOO_LARGE', size}          the merged metadata would exceed its limit
--   {'ID_TAKEN'}                          copy_id exists (caller retries with another id)
--- @include "includes/call_sliced"
--- @include "includes/oversized_metadata"
--- @include "includes/record_expiry"
--- @include "includes/apply_expiry"
--- @include "includes/thread_state"
--- @include "includes/index_thread"
local src_meta, src_hist, dst_meta, dst_hist = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local request_key = KEYS[5]
local idx = ARGV[1]
local copy_id, source_id, now, want, fingerprint, request_ttl, expire_ms =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local max_length, max_metadata = tonumber(ARGV[9]), tonumber(ARGV[10])
local first_field = 11

if request_key then
  local prior = redis.call('HMGET', request_key, 'copy_id', 'fingerprint')
  if prior[1] then
    if prior[2] ~= fingerprint then
      return {'REQUEST_ID_REUSED', prior[1]}
    end
    return {'DUPLICATE', prior[1]}
  end
end

if redis.call('EXISTS', src_meta) == 0 then
  return {'NOT_FOUND'}
end
local length = redis.call('LLEN', src_hist)
local keep = length
if want ~= '' then
  keep = tonumber(want)
  if keep > length then
    return {'OUT_OF_RANGE', length}
  end
end
if keep > max_length then
  return {'TOO_LONG', keep}
end
local oversized = oversized_metadata(src_meta, ARGV, first_field, max_metadata)
if oversized then
  return {'METADATA_TOO_LARGE', oversized}
end
if redis.call('EXISTS', dst_meta, dst_hist) > 0 then
  return {'ID_TAKEN'}
end

redis.call('COPY', src_meta, dst_meta)
redis.call('HSET', dst_meta, 'created_at', now, 'updated_at', now, 'copied_from', source_id)
call_sliced('HSET', dst_meta, ARGV, first_field, #ARGV)
if keep > 0 then
  redis.call('COPY', src_hist, dst_hist)
  if keep < length then
    redis.call('LTRIM', dst_hist, 0, keep - 1)
  end
end
-- COPY carries the source's expiry over (and its expire_at_ms field): always replace it
-- with the copy's own, so a copy never dies with its source by accident.
record_expiry(dst_meta, expire_ms)
local state = thread_state(dst_meta, dst_hist)
apply_expiry(dst_meta, dst_hist, expire_ms)
index_thread(idx, copy_id, dst_meta, 'new')

if request_key then
  redis.call('HSET', request_key, 'copy_id', copy_id, 'fingerprint', fingerprint)
  redis.call('EXPIRE', request_key, request_ttl)
end
return {'OK', state}
