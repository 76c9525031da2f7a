-- args: splits a command line into words the way a user expects:
-- whitespace separates, "double" or 'single' quotes group, a backslash
-- escapes the next character. Bounded: chat input is hostile.
local M = {}

M.MAX_ARGS = 32
M.MAX_ARG_LEN = 512

-- split(text [, max_args, max_len]) -> list of words, or nil, reason
function M.split(text, max_args, max_len)
  max_args = max_args or M.MAX_ARGS
  max_len = max_len or M.MAX_ARG_LEN
  local out, cur, quote, escaped, has = {}, {}, nil, false, false
  local function finish()
    if has then
      local word = table.concat(cur)
      if #word > max_len then return nil, ("an argument is longer than %d bytes"):format(max_len) end
      if #out >= max_args then return nil, ("more than %d arguments"):format(max_args) end
      out[#out + 1] = word
    end
    cur, has = {}, false
    return true
  end
  for _, c in utf8.codes(text, true) do
    local ch = utf8.char(c)
    if escaped then
      cur[#cur + 1], escaped, has = ch, false, true
    elseif ch == "\\" then
      escaped = true
    elseif quote then
      if ch == quote then quote = nil else cur[#cur + 1] = ch end
    elseif ch == '"' or ch == "'" then
      quote, has = ch, true
    elseif ch:match("^%s$") then
      local ok, err = finish()
      if not ok then return nil, err end
    else
      cur[#cur + 1], has = ch, true
    end
    if #cur > max_len then return nil, ("an argument is longer than %d bytes"):format(max_len) end
  end
  if quote then return nil, "unclosed quote" end
  if escaped then cur[#cur + 1], has = "\\", true end
  local ok, err = finish()
  if not ok then return nil, err end
  return out
end

return M
