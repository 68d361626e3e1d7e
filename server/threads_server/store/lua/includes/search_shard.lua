--- @include "thread_matches"
--- @include "smallest_set"

-- One shard's part of a Search (search.lua): the first q.limit matches past the cursor,
-- as a flat {id, score, ...} sorted by (sort key, id) in q's order. q holds: prefix (of
-- the shard's thread keys), check (whether to check each thread exists: purge_expired
-- left entries due), sort ('c', 'u' or 'i'), desc, cursor_score (number or nil),
-- cursor_id ('' for none), limit, filters (the shard's filter sets: idx:m:<digest>,
-- idx:f:<source>), sets ({c =, u =, i =} sorted-set names) and ids (thread_ids, or nil
-- for every thread).
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
          if thread_matches(q.prefix, id, q.filters, skip, q.check) and keep(id, '0') then
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
            and thread_matches(q.prefix, id, q.filters, skip, q.check) and keep(id, score) then
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
    for i = 1, math.min(#rows, q.limit) do
      keep(rows[i][2], rows[i][3])
    end
  end

  if q.ids then
    q.check = true -- the caller's ids, not the index's: any may name no thread
    sort_candidates(q.ids, nil)
  elseif #q.filters == 0 then
    walk(q.sets[q.sort], nil)
  else
    local driver = smallest_set(q.filters)
    if q.sort == 'c' then
      walk(q.filters[driver], driver) -- filter sets are scored by created_at too
    else
      sort_candidates(redis.call('ZRANGE', q.filters[driver], 0, -1), driver)
    end
  end
  return found
end
