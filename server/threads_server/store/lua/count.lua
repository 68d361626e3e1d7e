-- Count the threads that Search would page through with the same filters, over the shards
-- of a caller's threads that one Redis node holds (all 16 on one Redis; a node's share on
-- a cluster), each shard's expired index entries purged first (docs/search.md, "Count").
-- KEYS: the first shard's idx:c (it routes the call on a cluster; the shards' keys come
--       from ARGV, see includes/shards.lua)
-- ARGV: filters (as search.lua's), first_shard... (three per shard: prefix, idx, thread_ids)
-- Replies:
--   {'OK', count}
--- @include "includes/count_shard"
--- @include "includes/purge_expired"
--- @include "includes/shards"
local filters = ARGV[1]
local first_shard = 2

local now_ms = now_in_ms()
local count = 0
for _, shard in ipairs(shards(first_shard, filters)) do
  count = count + count_shard(shard, now_ms)
end
return {'OK', count}
