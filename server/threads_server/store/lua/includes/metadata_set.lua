-- The name (after the prefix) of the set of threads whose meta field (m:<key>) holds value
-- (a serialized Value, compared as stored): keys.metadata_digest computes the same.
local function metadata_set(field, value)
  return 'm:' .. redis.sha1hex(#field .. ':' .. field .. value)
end
