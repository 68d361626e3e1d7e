-- Read the entries a watcher has not seen yet, with the history's length, in one consistent
-- step (store/feeds.py). The list is the truth: wake-ups only say "look again".
-- KEYS: meta, history
-- ARGV: offset (the first index to read), max_entries (most entries in one message),
--       max_bytes (what one message's entries may take), per_entry (bytes a message adds
--       to each stored entry: its index, framing)
-- Replies:
--   {'OK', length, created_at, expire_at_ms, {entry, ...}}
--                                   entries from offset on (includes/read_entries.lua:
--                                   what fits in max_entries and max_bytes, at least one
--                                   when there is one); the history's length; the thread's
--                                   created_at (a thread deleted and made again under its
--                                   id has another) and its expiry ('' for none), so that a
--                                   watcher looks again when it is due instead of polling
--   {'NOT_FOUND'}                   no such thread
--- @include "includes/read_entries"
local meta, hist = KEYS[1], KEYS[2]
local offset, max_entries = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_bytes, per_entry = tonumber(ARGV[3]), tonumber(ARGV[4])

local state = redis.call('HMGET', meta, 'created_at', 'expire_at_ms')
local created_at = state[1]
if not created_at then
  return {'NOT_FOUND'}
end
local expire_at = state[2] or ''
local length = redis.call('LLEN', hist)
local found = read_entries(hist, offset, length, max_entries, max_bytes, per_entry)
return {'OK', length, created_at, expire_at, found}
