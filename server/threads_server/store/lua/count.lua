-- Count the threads of one shard that Search would page through with the same filters,
-- after purging the shard's expired index entries (docs/search.md, "Count").
-- KEYS: idx:c, idx:u, idx:i, idx:e, filter set1, filter set2, ... (as search.lua)
-- ARGV: prefix (of the shard's thread keys, 'thr:{<ns>.<s>}:'), idx (index prefix),
--       first_id... (thread_ids: only these; none = every thread)
-- Replies:
--   {'OK', count}
--- @include "includes/argv_list"
--- @include "includes/purge_expired"
--- @include "includes/count_matching"
--- @include "includes/smallest_set"
local by_created, expiring = KEYS[1], KEYS[4]
local first_filter = 5
local prefix, idx = ARGV[1], ARGV[2]
local first_id = 3

local now_ms, clean = purge_expired(prefix, idx)
local ids = argv_list(first_id)
local count
if ids then
  count = count_matching(prefix, ids, first_filter, nil)
elseif #KEYS < first_filter then
  count = redis.call('ZCARD', by_created)
  if not clean then -- more expired entries than one purge removes: check those one by one
    local due = redis.call('ZRANGE', expiring, '-inf', now_ms, 'BYSCORE')
    count = count - #due + count_matching(prefix, due, first_filter, nil)
  end
else
  local driver = smallest_set(first_filter)
  if clean and #KEYS == first_filter then -- one filter; the index holds live threads only
    count = redis.call('ZCARD', KEYS[driver])
  else
    count = count_matching(prefix, redis.call('ZRANGE', KEYS[driver], 0, -1), first_filter,
      driver)
  end
end
return {'OK', count}
