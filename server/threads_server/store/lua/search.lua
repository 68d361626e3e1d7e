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
local list = shards(first_shard, filters)
-- Each shard's first read: about twice its share of the rows merged (at least 2).
local batch = math.min(limit, math.max(2, math.ceil(2 * limit / #list)))
local now_ms = now_in_ms()
local heads = {}
for _, shard in ipairs(list) do
  local idx = shard.idx
  local clean = purge_expired(shard.prefix, idx, now_ms)
  local next_match = search_shard({
    prefix = shard.prefix,
    check = not clean,
    sort = sort,
    desc = desc,
    cursor_score = cursor_score,
    cursor_id = cursor_id,
    limit = limit,
    batch = batch,
    filters = shard.filters,
    sets = {c = idx .. 'c', u = idx .. 'u', i = idx .. 'i'},
    ids = shard.ids,
  })
  local id, score = next_match()
  if id then
    heads[#heads + 1] = {next = next_match, prefix = shard.prefix, id = id, score = score,
      number = tonumber(score)}
  end
end

-- Merge: each shard's matches come in (score, id) order and ids are unique across shards,
-- so the next row is the best head; stop at `limit` rows.
local rows, states = {}, {}
for merged = 1, limit do
  local best = nil
  for _, head in ipairs(heads) do
    if head.id and (not best
        or (head.number ~= best.number and (head.number > best.number) == desc)
        or (head.number == best.number and (head.id > best.id) == desc)) then
      best = head
    end
  end
  if not best then
    break
  end
  if merged > skip then
    rows[#rows + 1] = best.id
    rows[#rows + 1] = best.score
    if merged - skip <= take then
      local meta = best.prefix .. best.id .. ':meta'
      if redis.call('EXISTS', meta) == 1 then
        states[#states + 1] = thread_state(meta, best.prefix .. best.id .. ':hist')
      else
        states[#states + 1] = false
      end
    end
  end
  best.id, best.score = best.next()
  best.number = tonumber(best.score)
end
return {'OK', rows, states}
