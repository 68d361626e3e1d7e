--- @include "thread_matches"

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
