-- The index in `filters` of the smallest set (nil when there is none).
local function smallest_set(filters)
  if #filters == 1 then
    return 1 -- no ZCARD for a choice of one
  end
  local best, best_size = nil, nil
  for k = 1, #filters do
    local size = redis.call('ZCARD', filters[k])
    if not best or size < best_size then
      best, best_size = k, size
    end
  end
  return best
end
