-- Append entries to a thread's history, all or nothing.
-- KEYS: meta, history
-- ARGV: expected_length ('' when unset), now_us, max_history_length, entry1, entry2, ...
-- Returns {'OK', new_length}, {'NOT_FOUND'}, {'LENGTH_MISMATCH', length}
-- or {'TOO_LONG', length}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND'}
end
local length = redis.call('LLEN', KEYS[2])
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= length then
  return {'LENGTH_MISMATCH', length}
end
if length + #ARGV - 3 > tonumber(ARGV[3]) then
  return {'TOO_LONG', length}
end
local new_length = call_sliced('RPUSH', KEYS[2], ARGV, 4, #ARGV)
if length == 0 then
  -- The first entries create the history key: it takes the thread's expiry, if any.
  apply_expiry(KEYS[1], KEYS[2], redis.call('HGET', KEYS[1], 'expire_at_ms') or '')
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return {'OK', new_length}
