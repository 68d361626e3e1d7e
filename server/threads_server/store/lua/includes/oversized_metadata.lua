--- @include "merged_metadata_size"

-- The merged size (merged_metadata_size) of fields args[first..#args] when it would pass max_bytes,
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
