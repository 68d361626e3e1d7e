-- The index of the smallest set among KEYS[first..] (nil when there is none).
local function smallest_set(first)
  local best, best_size = nil, nil
  for k = first, #KEYS do
    local size = redis.call('ZCARD', KEYS[k])
    if not best or size < best_size then
      best, best_size = k, size
    end
  end
  return best
end
