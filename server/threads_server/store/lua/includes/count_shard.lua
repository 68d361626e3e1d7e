--- @include "count_matching"
--- @include "purge_expired"
--- @include "smallest_set"

-- One shard's part of a Count (count.lua; a shard as includes/shards.lua makes it): ZCARD
-- where the index holds live threads only, else the candidates checked one by one.
-- now_ms: now_in_ms() of the call.
local function count_shard(shard, now_ms)
  local clean = purge_expired(shard.prefix, shard.idx, now_ms)
  local sets = shard.filters
  if shard.ids then
    return count_matching(shard.prefix, shard.ids, sets, nil)
  end
  if #sets == 0 then
    local count = redis.call('ZCARD', shard.idx .. 'c')
    if not clean then -- more expired entries than one purge removes: check those one by one
      local due = redis.call('ZRANGE', shard.idx .. 'e', '-inf', now_ms, 'BYSCORE')
      count = count - #due + count_matching(shard.prefix, due, sets, nil)
    end
    return count
  end
  local driver = smallest_set(sets)
  if clean and #sets == 1 then -- one filter; the index holds live threads only
    return redis.call('ZCARD', sets[driver])
  end
  return count_matching(shard.prefix, redis.call('ZRANGE', sets[driver], 0, -1), sets, driver)
end
