-- A history's entries from `offset` on, for one reply (GetHistory's page, a Watch message):
-- at most `max_entries`, and no more than fit in `max_bytes`, each entry counted as its
-- stored size plus `per_entry` (what the reply adds to it: its index, the field's framing);
-- always the first one, so a reply never comes back empty while entries remain. Reads in
-- chunks, so a read of large entries stops near max_bytes instead of loading max_entries
-- of them; a few entries are one LRANGE.
local function read_entries(hist, offset, length, max_entries, max_bytes, per_entry)
  local chunk = 100
  local found, bytes = {}, 0
  local at = offset
  while at < length and #found < max_entries do
    local last = math.min(at + chunk, offset + max_entries, length) - 1
    for _, entry in ipairs(redis.call('LRANGE', hist, at, last)) do
      bytes = bytes + #entry + per_entry
      if bytes > max_bytes and #found > 0 then
        return found
      end
      found[#found + 1] = entry
    end
    at = last + 1
  end
  return found
end
