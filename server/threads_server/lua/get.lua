-- Read a thread's meta HASH and history length in one consistent step.
-- KEYS: meta, history
-- Returns {'OK', state} or {'NOT_FOUND'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND'}
end
return {'OK', thread_state(KEYS[1], KEYS[2])}
