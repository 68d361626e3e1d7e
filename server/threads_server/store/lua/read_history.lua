-- Read one page of a history, with its total length, in one consistent step.
-- KEYS: meta, history
-- ARGV: offset, limit
-- Replies:
--   {'OK', length, {entry, ...}}    the page, and the whole history's length
--   {'NOT_FOUND'}                   no such thread
local meta, hist = KEYS[1], KEYS[2]
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
return {'OK', redis.call('LLEN', hist), redis.call('LRANGE', hist, offset, offset + limit - 1)}
