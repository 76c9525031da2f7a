-- html: turns CyTube's chat HTML back into the text the user typed.
-- CyTube escapes & < >, runs its chat filters (_x_ -> <em>, *x* -> <strong>,
-- `x` -> <code>, ~~x~~ -> <s>, [sp]x[/sp] -> spoiler span) and wraps URLs in
-- <a> (cytube-protocol.md §7). We undo the filters, keep link text, drop
-- every other tag and decode entities, so "!cmd foo_bar_baz" is seen as typed.
local M = {}

local named = {
  amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = " ",
  ["#39"] = "'",
}

-- Decimal and hex references become UTF-8; invalid code points stay as written.
local function decode_entity(whole, name)
  local lower = name:lower()
  if named[lower] then return named[lower] end
  local num = lower:match("^#x(%x+)$")
  local code = num and tonumber(num, 16) or tonumber(lower:match("^#(%d+)$") or "")
  if code and code > 0 and code <= 0x10FFFF and not (code >= 0xD800 and code <= 0xDFFF) then
    return utf8.char(code)
  end
  return whole
end

function M.decode_entities(s)
  return (s:gsub("(&(#?[%w]+);)", decode_entity))
end

-- Tags CyTube's default filters produce, back to their markers.
local filter_marks = {
  em = "_", strong = "*", code = "`", s = "~~",
}

function M.to_text(s)
  if type(s) ~= "string" then return "" end
  -- Most chat has neither a tag nor an entity: nothing to undo (one scan
  -- instead of four pattern passes over every line).
  -- (Plain finds: a character class scans several times slower.)
  if not s:find("<", 1, true) and not s:find("&", 1, true) then return s end
  s = s:gsub('<span class="spoiler">(.-)</span>', "[sp]%1[/sp]")
  s = s:gsub("<(%a+)[^>]*>(.-)</%1>", function(tag, inner)
    local mark = filter_marks[tag:lower()]
    if mark then return mark .. inner .. mark end
    return inner                -- <a href=...>text</a> and anything else: the text
  end)
  s = s:gsub("<[^>]*>", "")     -- lone or unknown tags
  return M.decode_entities(s)
end

return M
