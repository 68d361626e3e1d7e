-- Step 2 of a thread's expiry (step 1, and why there are two: record_expiry.lua): one
-- absolute expiry on every key, so they expire together. PEXPIREAT on an absent history
-- is a no-op; Append applies the expiry when it creates the history.
local function apply_expiry(meta_key, history_key, expire_ms)
  if expire_ms == '0' then
    redis.call('PERSIST', meta_key)
    redis.call('PERSIST', history_key)
  elseif expire_ms ~= '' then
    redis.call('PEXPIREAT', meta_key, expire_ms)
    redis.call('PEXPIREAT', history_key, expire_ms)
  end
end
