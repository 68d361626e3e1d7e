-- Search the shards of a caller's threads that one Redis node holds (all 16 on one Redis;
-- a node's share on a cluster) in one call: purge each shard's expired index entries, take
-- each shard's first `limit` matches past the cursor, merge them in order, and reply the
-- merged rows after the first `skip`, with the stored state of the first `take` of those:
-- the page and its threads in one reply (docs/search.md, "One query").
-- KEYS: the first shard's idx:c (it routes the call on a cluster; the shards' keys come
--       from ARGV, see includes/shards.lua)
-- ARGV: sort ('c', 'u' or 'i'), order ('desc' or 'asc'), cursor_score ('' = from the
--       start), cursor_id ('' = none), limit, skip, take, filters (the filter sets relative
--       to an index prefix: 'm:<digest> f:<source>'), first_shard... (three per shard:
--       prefix, idx, thread_ids)
-- Replies:
--   {'OK', {id1, score1, ...}, {state1, ...}}   score: created_at or updated_at (us), '0'
--                                               in id order; state: as get.lua's (false
--                                               for a thread gone), one per row up to take
--- @include "includes/purge_expired"
--- @include "includes/search_shard"
--- @include "includes/shards"
--- @include "includes/thread_state"
local sort, order = ARGV[1], ARGV[2]
local cursor_score, cursor_id, limit = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local skip, take, filters = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local first_shard = 9

if sort == 'i' and cursor_id ~= '' then
  cursor_score = 0 -- in id order every score is 0, and the id alone places the cursor
end
local desc = order == 'desc'
local lists = {}
for _, shard in ipairs(shards(first_shard, filters)) do
  local idx = shard.idx
  local _, clean = purge_expired(shard.prefix, idx)
  local found = search_shard({
    prefix = shard.prefix,
    check = not clean,
    sort = sort,
    desc = desc,
    cursor_score = cursor_score,
    cursor_id = cursor_id,
    limit = limit,
    filters = shard.filters,
    sets = {c = idx .. 'c', u = idx .. 'u', i = idx .. 'i'},
    ids = shard.ids,
  })
  lists[#lists + 1] = {prefix = shard.prefix, found = found, at = 1}
end

-- Merge: each list is sorted by (score, id) in the query's order, and ids are unique
-- across shards, so the next row is the best head; stop at `limit` rows.
local rows, states = {}, {}
for merged = 1, limit do
  local best, best_score, best_id = nil, nil, nil
  for _, list in ipairs(lists) do
    if list.at < #list.found then
      local id, score = list.found[list.at], tonumber(list.found[list.at + 1])
      if not best
        or (score ~= best_score and (score > best_score) == desc)
        or (score == best_score and (id > best_id) == desc) then
        best, best_score, best_id = list, score, id
      end
    end
  end
  if not best then
    break
  end
  if merged > skip then
    rows[#rows + 1] = best_id
    rows[#rows + 1] = best.found[best.at + 1]
    if merged - skip <= take then
      local meta = best.prefix .. best_id .. ':meta'
      if redis.call('EXISTS', meta) == 1 then
        states[#states + 1] = thread_state(meta, best.prefix .. best_id .. ':hist')
      else
        states[#states + 1] = false
      end
    end
  end
  best.at = best.at + 2
end
return {'OK', rows, states}
