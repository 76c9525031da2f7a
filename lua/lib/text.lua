-- text: small helpers for chat text.
local M = {}

-- `s` cut to at most `max` bytes (no limit when max is nil) without leaving
-- half a UTF-8 character at the end. A string that was invalid UTF-8 keeps
-- only the part before its first bad byte (hostile input cannot slip a
-- broken sequence through).
function M.cut(s, max)
  if max and #s > max then s = s:sub(1, max) end
  local n, bad = utf8.len(s)
  if n then return s end
  return s:sub(1, bad - 1)
end

return M
