-- The size of a thread's metadata once fields args[first..last] (m:<key>, value pairs)
-- are merged over the stored ones: key bytes plus serialized value bytes, the measure
-- store/codec.py's metadata_size uses for a request's metadata.
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
