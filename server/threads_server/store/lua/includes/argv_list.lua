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
