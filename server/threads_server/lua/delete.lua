-- Delete a thread and its history. UNLINK frees a long history off the main thread.
-- KEYS: meta, history
-- Returns 1 when the thread existed, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('UNLINK', KEYS[1], KEYS[2])
return 1
