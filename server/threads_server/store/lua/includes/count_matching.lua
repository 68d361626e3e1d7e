--- @include "thread_matches"

-- How many threads of the shard are alive and in every set of `filters` but filters[skip].
local function count_matching(prefix, ids, filters, skip)
  local count = 0
  for _, id in ipairs(ids) do
    if thread_matches(prefix, id, filters, skip, true) then
      count = count + 1
    end
  end
  return count
end
