-- Read one page of a history, with its total length, in one consistent step.
-- KEYS: meta, history
-- ARGV: offset, limit
-- Returns {'OK', length, {entry, ...}} or {'NOT_FOUND'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND'}
end
local offset = tonumber(ARGV[1])
return {'OK', redis.call('LLEN', KEYS[2]),
        redis.call('LRANGE', KEYS[2], offset, offset + tonumber(ARGV[2]) - 1)}
