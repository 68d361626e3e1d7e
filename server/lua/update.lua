-- Merge metadata fields over a thread's stored ones.
-- KEYS: meta, history
-- ARGV: now_us, field1, value1, ...
-- Returns {'OK', state} or {'NOT_FOUND'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND'}
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
call_sliced('HSET', KEYS[1], ARGV, 2, #ARGV)
return {'OK', thread_state(KEYS[1], KEYS[2])}
