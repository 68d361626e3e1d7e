--- @include "words"

-- The shards a Search or Count call reads: ARGV[first..], three per shard (the prefix of
-- its thread keys 'thr:{<ns>.<s>}:', its index prefix, its thread_ids space-separated or
-- '' for every thread), and the query's filter sets named relative to an index prefix
-- ('m:<digest> f:<source>'). Each shard as {prefix, idx, ids (nil: every thread), filters
-- (its own filter sets)}. The shards' keys are not in KEYS: on a cluster they are in
-- several slots of the node the call was routed to (docs/search.md, "Round trips").
local function shards(first, filter_suffixes)
  local suffixes = words(filter_suffixes) or {}
  local list = {}
  for at = first, #ARGV, 3 do
    local idx = ARGV[at + 1]
    local filters = {}
    for k, suffix in ipairs(suffixes) do
      filters[k] = idx .. suffix
    end
    list[#list + 1] = {prefix = ARGV[at], idx = idx, ids = words(ARGV[at + 2]), filters = filters}
  end
  return list
end
