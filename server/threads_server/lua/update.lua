-- Merge metadata fields over a thread's stored ones, and/or change its expiry.
-- KEYS: meta, history
-- ARGV: now_us, expire_ms ('' = keep, '0' = remove), max_metadata_bytes,
--       field1, value1, ...
-- Returns {'OK', state}, {'NOT_FOUND'} or {'METADATA_TOO_LARGE', size}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND'}
end
if #ARGV > 3 then
  local size = merged_metadata_size(KEYS[1], ARGV, 4, #ARGV)
  if size > tonumber(ARGV[3]) then
    return {'METADATA_TOO_LARGE', size}
  end
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
call_sliced('HSET', KEYS[1], ARGV, 4, #ARGV)
record_expiry(KEYS[1], ARGV[2])
local state = thread_state(KEYS[1], KEYS[2])
apply_expiry(KEYS[1], KEYS[2], ARGV[2])
return {'OK', state}
