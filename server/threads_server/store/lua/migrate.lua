-- Move one thread's keys of the 0.1 layout into its shard and index it (threads-server
-- migrate, threads_server/store/migrate.py). The server read the old keys (DUMP) and
-- deletes them after this script: each key is restored only where it is not yet, so a run
-- that stopped half-way is finished by the next one, and running it again changes nothing.
-- KEYS: meta, history, key3, ... (the thread's keys in the new layout)
-- ARGV: idx (index prefix, '' = indexing off), id (the thread's),
--       first_dump... (per key: its DUMP, '' = absent at the old place, and its expiry, Unix
--       ms, 0 = none; none at all: only (re)index the thread, or drop its index entries
--       when it is gone)
-- Replies:
--   {'OK', restored}                number of keys restored
--- @include "includes/index_thread"
local meta = KEYS[1]
local idx, id = ARGV[1], ARGV[2]
local first_dump = 3

local restored = 0
for k = 1, (#ARGV - first_dump + 1) / 2 do
  local dump, expire_ms = ARGV[first_dump + 2 * (k - 1)], ARGV[first_dump + 2 * (k - 1) + 1]
  if dump ~= '' and redis.call('EXISTS', KEYS[k]) == 0 then
    -- ABSTTL keeps the thread's absolute expiry; one already past restores nothing.
    redis.call('RESTORE', KEYS[k], expire_ms, dump, 'ABSTTL')
    restored = restored + 1
  end
end
index_thread(idx, id, meta, 'rebuild')
return {'OK', restored}
