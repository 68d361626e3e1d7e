--- @include "metadata_set"
--- @include "unindex_thread"

-- The search index (docs/search.md). `idx` is a shard's index prefix, 'thr:{<ns>.<s>}:idx:'
-- ('' when the server runs with indexing off: every index step is then skipped). The
-- index keys of a shard share the slot of the shard's threads, so a write script changes
-- a thread and its index entries together. Members are thread ids; idx:c, idx:u hold
-- created_at and updated_at (us), idx:i 0 (ordered by id), idx:e the expiry (ms), every
-- idx:m:<digest> and idx:f:<source> created_at; idx:x maps an id to the names (after the
-- prefix) of the m: and f: sets it is in, so that it can leave them after its meta is gone.

-- Indexes a thread from its meta HASH as it is now. `change` says what the write was, so
-- that it touches only what can have changed (every call a script makes costs):
--   'new'      Create, Copy: nothing of the thread is indexed yet (unless an expired
--              thread of the same id still is: Create may reuse an id);
--   'update'   Update: metadata values and updated_at moved, the expiry moved as
--              expire_ms says ('' kept, '0' removed, else the new one);
--   'rebuild'  migrate: anything may be indexed, or not, or stale.
-- A thread whose meta is gone (an expiry already past) leaves the index.
local function index_thread(idx, id, meta_key, change, expire_ms)
  if idx == '' then
    return
  end
  local fields = redis.call('HGETALL', meta_key)
  if #fields == 0 then
    unindex_thread(idx, id)
    return
  end
  local sets, created, updated, expire, source = {}, '0', '0', nil, nil
  for i = 1, #fields, 2 do
    local field = fields[i]
    if string.sub(field, 1, 2) == 'm:' then
      sets[#sets + 1] = metadata_set(field, fields[i + 1])
    elseif field == 'created_at' then
      created = fields[i + 1]
    elseif field == 'updated_at' then
      updated = fields[i + 1]
    elseif field == 'expire_at_ms' then
      expire = fields[i + 1]
    elseif field == 'copied_from' then
      source = fields[i + 1]
    end
  end
  if source then
    sets[#sets + 1] = 'f:' .. source
  end
  if change == 'update' and redis.call('ZADD', idx .. 'u', 'XX', 'CH', updated, id) == 0 then
    change = 'rebuild' -- not indexed (written while indexing was off), or nothing moved
  elseif change == 'new' and redis.call('ZSCORE', idx .. 'c', id) then
    change = 'rebuild' -- an earlier thread of this id expired and is not purged yet
  end
  local before = {}
  if change ~= 'new' then
    local listed = redis.call('HGET', idx .. 'x', id)
    for name in string.gmatch(listed or '', '[^ ]+') do
      before[name] = true
    end
  end
  local now_in = {}
  for _, name in ipairs(sets) do
    now_in[name] = true
    if not before[name] then
      redis.call('ZADD', idx .. name, created, id)
    end
  end
  local changed = change == 'new'
  for name in pairs(before) do
    if not now_in[name] then
      redis.call('ZREM', idx .. name, id)
      changed = true
    end
  end
  for name in pairs(now_in) do
    changed = changed or not before[name]
  end
  if changed then
    if #sets > 0 then
      redis.call('HSET', idx .. 'x', id, table.concat(sets, ' '))
    else
      redis.call('HDEL', idx .. 'x', id)
    end
  end
  if change ~= 'update' then
    redis.call('ZADD', idx .. 'c', created, id)
    redis.call('ZADD', idx .. 'u', updated, id)
    redis.call('ZADD', idx .. 'i', 0, id)
  end
  if change == 'update' and expire_ms == '' then
    return -- the expiry is as it was
  end
  if expire then
    redis.call('ZADD', idx .. 'e', expire, id)
  elseif change ~= 'new' then
    redis.call('ZREM', idx .. 'e', id)
  end
end
