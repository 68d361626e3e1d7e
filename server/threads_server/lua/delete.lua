-- Delete a thread and its history. UNLINK frees a long history off the main thread.
-- KEYS: meta, history
-- ARGV: none
-- Replies:
--   {'OK'}                          deleted
--   {'NOT_FOUND'}                   no such thread
local meta, hist = KEYS[1], KEYS[2]

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
redis.call('UNLINK', meta, hist)
return {'OK'}
