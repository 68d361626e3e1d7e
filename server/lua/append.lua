-- Append entries to a thread's history, all or nothing.
-- KEYS: meta, history
-- ARGV: expected_length ('' when unset), now_us, entry1, entry2, ...
-- Returns {'OK', new_length}, {'NOT_FOUND'} or {'LENGTH_MISMATCH', length}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND'}
end
if ARGV[1] ~= '' then
  local length = redis.call('LLEN', KEYS[2])
  if tonumber(ARGV[1]) ~= length then
    return {'LENGTH_MISMATCH', length}
  end
end
local new_length = call_sliced('RPUSH', KEYS[2], ARGV, 3, #ARGV)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return {'OK', new_length}
