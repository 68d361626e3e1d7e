--- @include "thread_matches"
--- @include "smallest_set"

-- One shard's part of a Search (search.lua): a function that returns the shard's next
-- match past the cursor, in q's order of (sort key, id), as id and score (the score a
-- string: created_at or updated_at in us, '0' in id order), and nil once there is none.
-- Rows are read lazily, in batches: q.batch rows first, then twice as many each time up
-- to 1,024, so that the merge of a page reads from each shard about what the page takes
-- from it rather than a whole page from every shard. q holds: prefix (of the shard's
-- thread keys), check (whether to check each thread exists: purge_expired left entries
-- due), sort ('c', 'u' or 'i'), desc, cursor_score (number or nil), cursor_id ('' for
-- none), limit (no more matches are ever taken), batch, filters (the shard's filter sets:
-- idx:m:<digest>, idx:f:<source>), sets ({c =, u =, i =} sorted-set names) and ids
-- (thread_ids, or nil for every thread).
local function search_shard(q)
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

  -- The rows of a list already in order ({id, score, id, score, ...}), one at a time.
  local function from_list(rows)
    local at = -1
    return function()
      at = at + 2
      return rows[at], rows[at + 1]
    end
  end

  -- One batch of a sorted set in order from the cursor: {id, score, ...} ({id, ...} in id
  -- order, where every score is 0 and the id alone places the cursor).
  local function batch_of(key, offset, size)
    if q.sort == 'i' then
      local from = q.cursor_id ~= '' and '(' .. q.cursor_id or (q.desc and '+' or '-')
      if q.desc then
        return redis.call('ZRANGE', key, from, '-', 'BYLEX', 'REV', 'LIMIT', offset, size)
      end
      return redis.call('ZRANGE', key, from, '+', 'BYLEX', 'LIMIT', offset, size)
    end
    local from = q.cursor_score or (q.desc and '+inf' or '-inf')
    if q.desc then
      return redis.call('ZRANGE', key, from, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset, size,
        'WITHSCORES')
    end
    return redis.call('ZRANGE', key, from, '+inf', 'BYSCORE', 'LIMIT', offset, size,
      'WITHSCORES')
  end

  -- Walks a sorted set in order from the cursor, keeping the candidates that are in every
  -- other filter set and alive. Members scored by the sort key come in (score, id) order,
  -- as Redis orders ties.
  local function walk(key, skip)
    local step = q.sort == 'i' and 1 or 2
    local page, at, offset, size, last = {}, 1, 0, q.batch, false
    return function()
      while true do
        while at <= #page do
          local id, score = page[at], step == 1 and '0' or page[at + 1]
          at = at + step
          if (step == 1 or past_cursor(tonumber(score), id))
            and thread_matches(q.prefix, id, q.filters, skip, q.check) then
            return id, score
          end
        end
        if last then
          return nil
        end
        page, at = batch_of(key, offset, size), 1
        last = #page < size * step
        offset, size = offset + size, math.min(size * 2, 1024)
      end
    end
  end

  -- Sorts the candidates that match by the sort key and keeps the first `limit` past the
  -- cursor: O(candidates), for thread_ids and for a filter in another order than its sets'.
  local function sort_candidates(ids, skip)
    local rows = {}
    for _, id in ipairs(ids) do
      if thread_matches(q.prefix, id, q.filters, skip, q.check) then
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
    local kept = {}
    for i = 1, math.min(#rows, q.limit) do
      kept[#kept + 1] = rows[i][2]
      kept[#kept + 1] = rows[i][3]
    end
    return from_list(kept)
  end

  if q.ids then
    q.check = true -- the caller's ids, not the index's: any may name no thread
    return sort_candidates(q.ids, nil)
  end
  if #q.filters == 0 then
    return walk(q.sets[q.sort], nil)
  end
  local driver = smallest_set(q.filters)
  if q.sort == 'c' then
    return walk(q.filters[driver], driver) -- filter sets are scored by created_at too
  end
  return sort_candidates(redis.call('ZRANGE', q.filters[driver], 0, -1), driver)
end
