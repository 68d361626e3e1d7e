-- Search one shard of a caller's threads: purge its expired index entries, then return the
-- first `limit` matching threads past the cursor, in order (docs/search.md, "One query").
-- The server merges the shards' lists, so each one is sorted by (sort key, id).
-- KEYS: idx:c, idx:u, idx:i, idx:e, filter set1, filter set2, ... (idx:m:<digest>,
--       idx:f:<source>)
-- ARGV: prefix (of the shard's thread keys, 'thr:{<ns>.<s>}:'), idx (index prefix),
--       sort ('c', 'u' or 'i'), order ('desc' or 'asc'), cursor_score ('' = from the
--       start), cursor_id ('' = none), limit, first_id... (thread_ids: only these; none =
--       every thread)
-- Replies:
--   {'OK', {id1, score1, ...}}   score: created_at or updated_at (us); '0' in id order
--- @include "includes/argv_list"
--- @include "includes/purge_expired"
--- @include "includes/search_shard"
local by_created, by_updated, by_id = KEYS[1], KEYS[2], KEYS[3]
local first_filter = 5
local prefix, idx, sort, order = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cursor_score, cursor_id, limit = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local first_id = 8

if sort == 'i' and cursor_id ~= '' then
  cursor_score = 0 -- in id order every score is 0, and the id alone places the cursor
end
local _, clean = purge_expired(prefix, idx)
local found = search_shard({
  prefix = prefix,
  check = not clean,
  sort = sort,
  desc = order == 'desc',
  cursor_score = cursor_score,
  cursor_id = cursor_id,
  limit = limit,
  first_filter = first_filter,
  sets = {c = by_created, u = by_updated, i = by_id},
  ids = argv_list(first_id),
})
return {'OK', found}
