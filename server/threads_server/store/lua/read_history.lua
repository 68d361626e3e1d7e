-- Read one page of a history, with its total length, in one consistent step.
-- KEYS: meta, history
-- ARGV: offset, limit (the page size asked for), max_bytes (what the page's entries may
--       take in one reply), per_entry (bytes a reply adds to each stored entry)
-- Replies:
--   {'OK', length, {entry, ...}}    the page (includes/read_entries.lua: up to limit
--                                   entries, fewer when more would not fit in max_bytes,
--                                   at least one when there is one), the history's length
--   {'NOT_FOUND'}                   no such thread
--- @include "includes/read_entries"
local meta, hist = KEYS[1], KEYS[2]
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_bytes, per_entry = tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('EXISTS', meta) == 0 then
  return {'NOT_FOUND'}
end
local length = redis.call('LLEN', hist)
return {'OK', length, read_entries(hist, offset, length, limit, max_bytes, per_entry)}
