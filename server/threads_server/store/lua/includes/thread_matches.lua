-- Whether thread `id` of the shard is in every set of `filters` but filters[skip] (the set
-- it came from) and, when `check` is set, alive: the existence check makes a read exact
-- whatever the index still holds (inside a script Redis judges expiry at the script's
-- start, as Get does). After a purge that left nothing due, every entry is a live thread
-- (Delete unindexes in its own script), so the check is skipped then.
local function thread_matches(prefix, id, filters, skip, check)
  for k = 1, #filters do
    if k ~= skip and not redis.call('ZSCORE', filters[k], id) then
      return false
    end
  end
  return not check or redis.call('EXISTS', prefix .. id .. ':meta') == 1
end
