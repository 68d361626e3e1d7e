-- Helpers shared by every script; threads_server/scripts.py puts this file before each one.

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

-- The stored state of a thread, as the server builds a Thread message from it:
-- {history_length, {field, value, ...}}.
local function thread_state(meta_key, history_key)
  return {redis.call('LLEN', history_key), redis.call('HGETALL', meta_key)}
end

-- A thread's expiry takes two steps, so that a script can read the thread's state in
-- between: an expiry already past when the script runs (a ttl of a millisecond, clock
-- skew) deletes the keys at once, and the state must be read before that, and the field
-- written before that too, or HSET would bring the meta back as a stray hash.
-- expire_ms: '' keeps the expiry, '0' removes it, else the Unix time in ms to expire at.

-- Step 1: the meta field expire_at_ms, which Get reports.
local function record_expiry(meta_key, expire_ms)
  if expire_ms == '0' then
    redis.call('HDEL', meta_key, 'expire_at_ms')
  elseif expire_ms ~= '' then
    redis.call('HSET', meta_key, 'expire_at_ms', expire_ms)
  end
end

-- Step 2: one absolute expiry on every key, so they expire together. PEXPIREAT on an
-- absent history is a no-op; Append applies the expiry when it creates the history.
local function apply_expiry(meta_key, history_key, expire_ms)
  if expire_ms == '0' then
    redis.call('PERSIST', meta_key)
    redis.call('PERSIST', history_key)
  elseif expire_ms ~= '' then
    redis.call('PEXPIREAT', meta_key, expire_ms)
    redis.call('PEXPIREAT', history_key, expire_ms)
  end
end

-- The size of a thread's metadata once fields args[first..last] (m:<key>, value pairs)
-- are merged over the stored ones: key bytes plus serialized value bytes, the measure
-- server/codec.py's metadata_size uses for a request's metadata.
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

-- The merged size (as above) of fields args[first..#args] when it would pass max_bytes,
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
