-- Read the entries a watcher has not seen yet, with the history's length, in one consistent
-- step (store/feeds.py). The list is the truth: wake-ups only say "look again".
-- KEYS: meta, history
-- ARGV: offset (the first index to read), max_entries (most entries in one message),
--       max_bytes (what one message may carry), per_entry (bytes a message adds to each
--       stored entry: its index, framing; an entry counts as its stored size plus these)
-- Replies:
--   {'OK', length, created_at, expire_at_ms, {entry, ...}}
--                                   entries from offset on: as many as fit in max_entries
--                                   and max_bytes, but at least one when there is one; the
--                                   history's length; the thread's created_at (a thread
--                                   deleted and made again under its id has another) and
--                                   its expiry ('' for none), so that a watcher looks again
--                                   when it is due instead of polling
--   {'NOT_FOUND'}                   no such thread
local meta, hist = KEYS[1], KEYS[2]
local offset, max_entries = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_bytes, per_entry = tonumber(ARGV[3]), tonumber(ARGV[4])
-- LRANGE in chunks, so a read of large entries stops near max_bytes instead of loading
-- max_entries of them; most reads (a few new entries) are one LRANGE.
local chunk = 100

local state = redis.call('HMGET', meta, 'created_at', 'expire_at_ms')
local created_at = state[1]
if not created_at then
  return {'NOT_FOUND'}
end
local expire_at = state[2] or ''
local length = redis.call('LLEN', hist)
local found, bytes = {}, 0
local at = offset
while at < length and #found < max_entries do
  local last = math.min(at + chunk, offset + max_entries, length) - 1
  for _, entry in ipairs(redis.call('LRANGE', hist, at, last)) do
    bytes = bytes + #entry + per_entry
    if bytes > max_bytes and #found > 0 then
      return {'OK', length, created_at, expire_at, found}
    end
    found[#found + 1] = entry
  end
  at = last + 1
end
return {'OK', length, created_at, expire_at, found}
