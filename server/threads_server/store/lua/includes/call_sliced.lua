-- Runs `command key args[first..last]` in slices of 1,000 arguments, because Lua's
-- unpack() fails past a few thousand values. 1,000 is even, so HSET field/value pairs
-- never straddle two slices. Returns the last slice's reply (nil when the range is empty).
local function call_sliced(command, key, args, first, last)
  local reply = nil
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    reply = redis.call(command, key, unpack(args, i, j))
    i = j + 1
  end
  return reply
end
