--- @include "unindex_thread"

-- Most expired index entries one Search or Count removes before reading; any left over
-- are skipped by the existence check on read, and removed by the next calls.
local PURGE_BUDGET = 1000

-- Now in ms, by Redis's clock (the one it expires keys by), read once per call.
local function now_in_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Purge before reading: removes from the shard's index every thread whose expiry (idx:e)
-- is at or before `now_ms` and whose meta is gone (Redis runs no script on expiry).
-- Returns whether nothing is left to purge (the index then holds live threads only).
local function purge_expired(prefix, idx, now_ms)
  local due = redis.call('ZRANGE', idx .. 'e', '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, PURGE_BUDGET)
  for _, id in ipairs(due) do
    if redis.call('EXISTS', prefix .. id .. ':meta') == 0 then
      unindex_thread(idx, id)
    end
  end
  return #due < PURGE_BUDGET
end
