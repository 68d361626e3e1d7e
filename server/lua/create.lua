-- Create a thread with its metadata and initial history, all or nothing.
-- KEYS: meta, history
-- ARGV: now_us, n (number of metadata args that follow), field1, value1, ..., entry1, entry2, ...
-- Returns {'CREATED'} or {'EXISTS', state} (the untouched existing thread).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'EXISTS', thread_state(KEYS[1], KEYS[2])}
end
local n_meta = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'created_at', ARGV[1], 'updated_at', ARGV[1])
call_sliced('HSET', KEYS[1], ARGV, 3, 2 + n_meta)
call_sliced('RPUSH', KEYS[2], ARGV, 3 + n_meta, #ARGV)
return {'CREATED'}
