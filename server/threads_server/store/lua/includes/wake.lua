-- Wakes the thread's watchers (store/feeds.py): publishes `message` on the thread's channel,
-- '<key base>:watch' beside its '<key base>:meta' (keys.ThreadKeys.channel names it the same
-- way), so the channel hashes to the thread's own slot. Sharded Pub/Sub where the server has
-- it (Redis 7+ and Valkey, which set REDIS_VERSION_NUM; corridor/subscriptions.py subscribes
-- with SSUBSCRIBE on the same servers), plain PUBLISH on Redis 6.2. The message only says
-- "look again" (an Append's: the new length; a Delete's: 'deleted'; an expiry change's:
-- 'expiry'): watchers read the history list itself, so a lost message costs a read, never
-- an entry.
local function wake(meta_key, message)
  local channel = string.sub(meta_key, 1, -6) .. ':watch'
  if redis.REDIS_VERSION_NUM then
    redis.call('SPUBLISH', channel, message)
  else
    redis.call('PUBLISH', channel, message)
  end
end
