-- duration: human-readable spans of time, for replies ("3d 4h", "5m 2s").
local M = {}

local units = { { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } }

-- format(seconds [, parts]) -> "1h 2m" (at most `parts` units, default 2)
function M.format(seconds, parts)
  seconds = math.max(0, math.floor(tonumber(seconds) or 0))
  parts = parts or 2
  if seconds == 0 then return "0s" end
  local out = {}
  for _, u in ipairs(units) do
    local n = seconds // u[2]
    if n > 0 and #out < parts then
      out[#out + 1] = n .. u[1]
      seconds = seconds - n * u[2]
    end
  end
  return table.concat(out, " ")
end

return M
