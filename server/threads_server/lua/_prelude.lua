-- Helpers shared by every script; threads_server/scripts.py puts this file before each one.

-- Runs `command key args[first..last]` in slices of 1,000 arguments, because Lua's
-- unpack() fails past a few thousand values. 1,000 is even, so HSET field/value pairs
-- never straddle two slices. Returns the last slice's reply (nil when the range is empty).
local function call_sliced(command, key, args, first, last)
  local reply = nil
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    reply = redis.call(command, key, unpack(args, i, j))
    i = j + 1
  end
  return reply
end

-- Wakes the thread's watchers (threads_server/watch.py): publishes `message` on the thread's
-- channel, '<key base>:watch' beside its '<key base>:meta' (keys.ThreadKeys.channel names it
-- the same way), so the channel hashes to the thread's own slot. Sharded Pub/Sub where the
-- server has it (Redis 7+, Valkey; what threads_server/subscriptions.py subscribes with,
-- deciding from the same version), plain PUBLISH on Redis 6.2. The message only says "look
-- again": watchers read the history list itself, so a lost message costs a read, never an
-- entry.
local function wake(meta_key, message)
  local channel = string.sub(meta_key, 1, -6) .. ':watch'
  if redis.REDIS_VERSION_NUM then
    redis.call('SPUBLISH', channel, message)
  else
    redis.call('PUBLISH', channel, message)
  end
end

-- The stored state of a thread, as the server builds a Thread message from it:
-- {history_length, {field, value, ...}}.
local function thread_state(meta_key, history_key)
  return {redis.call('LLEN', history_key), redis.call('HGETALL', meta_key)}
end

-- A thread's expiry takes two steps, so that a script can read the thread's state in
-- between: an expiry already past when the script runs (a ttl of a millisecond, clock
-- skew) deletes the keys at once, and the state must be read before that, and the field
-- written before that too, or HSET would bring the meta back as a stray hash.
-- expire_ms: '' keeps the expiry, '0' removes it, else the Unix time in ms to expire at.

-- Step 1: the meta field expire_at_ms, which Get reports.
local function record_expiry(meta_key, expire_ms)
  if expire_ms == '0' then
    redis.call('HDEL', meta_key, 'expire_at_ms')
  elseif expire_ms ~= '' then
    redis.call('HSET', meta_key, 'expire_at_ms', expire_ms)
  end
end

-- Step 2: one absolute expiry on every key, so they expire together. PEXPIREAT on an
-- absent history is a no-op; Append applies the expiry when it creates the history.
local function apply_expiry(meta_key, history_key, expire_ms)
  if expire_ms == '0' then
    redis.call('PERSIST', meta_key)
    redis.call('PERSIST', history_key)
  elseif expire_ms ~= '' then
    redis.call('PEXPIREAT', meta_key, expire_ms)
    redis.call('PEXPIREAT', history_key, expire_ms)
  end
end

-- The size of a thread's metadata once fields args[first..last] (m:<key>, value pairs)
-- are merged over the stored ones: key bytes plus serialized value bytes, the measure
-- server/codec.py's metadata_size uses for a request's metadata.
local function merged_metadata_size(meta_key, args, first, last)
  local sizes, total = {}, 0
  local stored = redis.call('HGETALL', meta_key)
  for i = 1, #stored, 2 do
    if string.sub(stored[i], 1, 2) == 'm:' then
      sizes[stored[i]] = #stored[i] - 2 + #stored[i + 1]
      total = total + sizes[stored[i]]
    end
  end
  for i = first, last, 2 do
    local size = #args[i] - 2 + #args[i + 1]
    total = total - (sizes[args[i]] or 0) + size
    sizes[args[i]] = size
  end
  return total
end

-- The merged size (as above) of fields args[first..#args] when it would pass max_bytes,
-- else nil; nil without reading anything when there are no fields.
local function oversized_metadata(meta_key, args, first, max_bytes)
  if #args < first then
    return nil
  end
  local size = merged_metadata_size(meta_key, args, first, #args)
  if size > max_bytes then
    return size
  end
  return nil
end

-- The search index (docs/search.md). `idx` is a shard's index prefix, 'thr:{<ns>.<s>}:idx:'
-- ('' when the server runs with indexing off: every index step is then skipped). The
-- index keys of a shard share the slot of the shard's threads, so a write script changes
-- a thread and its index entries together. Members are thread ids; idx:c, idx:u hold
-- created_at and updated_at (us), idx:i 0 (ordered by id), idx:e the expiry (ms), every
-- idx:m:<digest> and idx:f:<source> created_at; idx:x maps an id to the names (after the
-- prefix) of the m: and f: sets it is in, so that it can leave them after its meta is gone.

-- The name (after the prefix) of the set of threads whose meta field (m:<key>) holds value
-- (a serialized Value, compared as stored): keys.metadata_digest computes the same.
local function metadata_set(field, value)
  return 'm:' .. redis.sha1hex(#field .. ':' .. field .. value)
end

-- Removes a thread from every index set of its shard.
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

-- Most expired index entries one Search or Count removes before reading; any left over
-- are skipped by the existence check on read, and removed by the next calls.
local PURGE_BUDGET = 1000

-- Purge before reading: removes from the shard's index every thread whose expiry (idx:e)
-- has passed and whose meta is gone (Redis runs no script on expiry). Returns the time
-- (ms, Redis's clock) and whether nothing is left to purge (the index then holds live
-- threads only).
local function purge_expired(prefix, idx)
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local due = redis.call('ZRANGE', idx .. 'e', '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, PURGE_BUDGET)
  for _, id in ipairs(due) do
    if redis.call('EXISTS', prefix .. id .. ':meta') == 0 then
      unindex_thread(idx, id)
    end
  end
  return now_ms, #due < PURGE_BUDGET
end

-- Whether thread `id` of the shard is in every set of KEYS[first..] but KEYS[skip] (the set
-- it came from) and, when `check` is set, alive: the existence check makes a read exact
-- whatever the index still holds (inside a script Redis judges expiry at the script's
-- start, as Get does). After a purge that left nothing due, every entry is a live thread
-- (Delete unindexes in its own script), so the check is skipped then.
local function thread_matches(prefix, id, first, skip, check)
  for k = first, #KEYS do
    if k ~= skip and not redis.call('ZSCORE', KEYS[k], id) then
      return false
    end
  end
  return not check or redis.call('EXISTS', prefix .. id .. ':meta') == 1
end

-- The index of the smallest set among KEYS[first..] (nil when there is none).
local function smallest_set(first)
  local best, best_size = nil, nil
  for k = first, #KEYS do
    local size = redis.call('ZCARD', KEYS[k])
    if not best or size < best_size then
      best, best_size = k, size
    end
  end
  return best
end

-- One shard's part of a Search (search.lua): the first q.limit matches past the cursor,
-- as a flat {id, score, ...} sorted by (sort key, id) in q's order. q holds: prefix (of
-- the shard's thread keys), check (whether to check each thread exists: purge_expired
-- left entries due), sort ('c', 'u' or 'i'), desc, cursor_score (number or nil),
-- cursor_id ('' for none), limit, first_filter (index in KEYS of the first filter set),
-- sets ({c =, u =, i =} sorted-set names) and ids (thread_ids, or nil for every thread).
local function search_shard(q)
  local found = {}

  -- Whether (score, id) comes after the cursor in the requested order.
  local function past_cursor(score, id)
    if not q.cursor_score then
      return true
    end
    if score ~= q.cursor_score then
      return (score < q.cursor_score) == q.desc
    end
    return id ~= q.cursor_id and (id < q.cursor_id) == q.desc
  end

  local function keep(id, score)
    found[#found + 1] = id
    found[#found + 1] = score
    return #found >= 2 * q.limit
  end

  -- Walks a sorted set in order from the cursor until `limit` matches are kept. Members
  -- scored by the sort key come in (score, id) order, as Redis orders ties.
  local function walk(key, skip)
    local offset, batch = 0, math.max(q.limit, 8)
    while true do
      local page
      if q.sort == 'i' then
        local from = q.cursor_id ~= '' and '(' .. q.cursor_id or (q.desc and '+' or '-')
        if q.desc then
          page = redis.call('ZRANGE', key, from, '-', 'BYLEX', 'REV', 'LIMIT', offset, batch)
        else
          page = redis.call('ZRANGE', key, from, '+', 'BYLEX', 'LIMIT', offset, batch)
        end
        for _, id in ipairs(page) do
          if thread_matches(q.prefix, id, q.first_filter, skip, q.check) and keep(id, '0') then
            return
          end
        end
        if #page < batch then
          return
        end
      else
        local from = q.cursor_score or (q.desc and '+inf' or '-inf')
        if q.desc then
          page = redis.call('ZRANGE', key, from, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset,
            batch, 'WITHSCORES')
        else
          page = redis.call('ZRANGE', key, from, '+inf', 'BYSCORE', 'LIMIT', offset, batch,
            'WITHSCORES')
        end
        for i = 1, #page, 2 do
          local id, score = page[i], page[i + 1]
          if past_cursor(tonumber(score), id)
            and thread_matches(q.prefix, id, q.first_filter, skip, q.check) and keep(id, score) then
            return
          end
        end
        if #page < 2 * batch then
          return
        end
      end
      offset = offset + batch
      batch = math.min(batch * 2, 1024)
    end
  end

  -- Sorts the candidates that match by the sort key and keeps the first `limit` past the
  -- cursor: O(candidates), for thread_ids and for a filter in another order than its sets'.
  local function sort_candidates(ids, skip)
    local rows = {}
    for _, id in ipairs(ids) do
      if thread_matches(q.prefix, id, q.first_filter, skip, q.check) then
        local score = '0'
        if q.sort ~= 'i' then
          score = redis.call('ZSCORE', q.sets[q.sort], id)
        end
        if score and past_cursor(tonumber(score), id) then
          rows[#rows + 1] = {tonumber(score), id, score}
        end
      end
    end
    table.sort(rows, function(a, b) -- strict, as table.sort needs: never true for a == b
      if a[1] ~= b[1] then
        if q.desc then
          return a[1] > b[1]
        end
        return a[1] < b[1]
      end
      if q.desc then
        return a[2] > b[2]
      end
      return a[2] < b[2]
    end)
    for i = 1, math.min(#rows, q.limit) do
      keep(rows[i][2], rows[i][3])
    end
  end

  if q.ids then
    q.check = true -- the caller's ids, not the index's: any may name no thread
    sort_candidates(q.ids, nil)
  elseif #KEYS < q.first_filter then
    walk(q.sets[q.sort], nil)
  else
    local driver = smallest_set(q.first_filter)
    if q.sort == 'c' then
      walk(KEYS[driver], driver) -- filter sets are scored by created_at too
    else
      sort_candidates(redis.call('ZRANGE', KEYS[driver], 0, -1), driver)
    end
  end
  return found
end

-- How many threads of the shard are alive and in every set of KEYS[first..] but KEYS[skip].
local function count_matching(prefix, ids, first, skip)
  local count = 0
  for _, id in ipairs(ids) do
    if thread_matches(prefix, id, first, skip, true) then
      count = count + 1
    end
  end
  return count
end

-- ARGV[first..] as a list, or nil when there is none (thread_ids of Search and Count).
local function argv_list(first)
  if #ARGV < first then
    return nil
  end
  local list = {}
  for i = first, #ARGV do
    list[#list + 1] = ARGV[i]
  end
  return list
end
