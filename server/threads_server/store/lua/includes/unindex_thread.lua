-- Removes a thread from every index set of its shard (the index: index_thread.lua).
local function unindex_thread(idx, id)
  if idx == '' then
    return
  end
  local sets = redis.call('HGET', idx .. 'x', id)
  if sets then
    for name in string.gmatch(sets, '[^ ]+') do
      redis.call('ZREM', idx .. name, id)
    end
    redis.call('HDEL', idx .. 'x', id)
  end
  redis.call('ZREM', idx .. 'c', id)
  redis.call('ZREM', idx .. 'u', id)
  redis.call('ZREM', idx .. 'i', id)
  redis.call('ZREM', idx .. 'e', id)
end
