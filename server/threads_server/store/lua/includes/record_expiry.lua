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
