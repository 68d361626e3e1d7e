-- The space-separated words of `text` as a list, or nil when there is none (a shard's
-- thread_ids, a query's filter sets: ids and set names hold no spaces).
local function words(text)
  local list = {}
  for word in string.gmatch(text, '[^ ]+') do
    list[#list + 1] = word
  end
  if #list == 0 then
    return nil
  end
  return list
end
