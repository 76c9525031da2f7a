-- links: the pure parts of the links plugin — URLs in a chat line, a URL's
-- host, domain lists, and a page's title (og:title or <title>, entities
-- decoded, whitespace collapsed, cut to one line). No I/O.
local html = require("html")
local text = require("text")

local M = {}

-- URLs in `s` (plain text), at most `max`, trailing punctuation dropped.
function M.find_urls(s, max)
  local out, seen = {}, {}
  for url in s:gmatch("https?://[%w%-%._~:/%?#%[%]@!%$&'%(%)%*%+,;=%%]+") do
    url = url:gsub("[%.,;:!%?'%)%]]+$", "")
    if url:match("^https?://[^/%?#]+") and not seen[url] then
      seen[url] = true
      out[#out + 1] = url
      if #out >= (max or 3) then break end
    end
  end
  return out
end

-- The lower-case host of a URL (no userinfo, no port), or nil.
function M.host(url)
  local auth = url:match("^%a[%w+.-]*://([^/%?#]+)")
  if not auth then return nil end
  auth = auth:gsub("^.*@", "")
  local v6 = auth:match("^%[([^%]]+)%]")
  if v6 then return v6:lower() end
  return (auth:gsub(":%d*$", "")):lower()
end

-- Is host `h` the domain `d` or below it?
function M.in_domain(h, d)
  d = d:lower():gsub("^%.", "")
  return h == d or (#h > #d and h:sub(-#d - 1) == "." .. d)
end

function M.in_any(h, list)
  for _, d in ipairs(list or {}) do
    if M.in_domain(h, d) then return true end
  end
  return false
end

local function attr(tag, name)
  return tag:match(name .. '%s*=%s*"([^"]*)"') or tag:match(name .. "%s*=%s*'([^']*)'")
end

-- og:title from a <meta> tag, in either attribute order.
local function og_title(page)
  for tag in page:gmatch("<[mM][eE][tT][aA]%s[^>]*>") do
    local prop = attr(tag, "property") or attr(tag, "name")
    if prop and prop:lower() == "og:title" then
      local c = attr(tag, "content")
      if c then return c end
    end
  end
end

-- One line: entities decoded, controls and runs of whitespace made single
-- spaces, trimmed, cut to `max` bytes (on a UTF-8 boundary, "…" marks a cut).
function M.clean(s, max)
  s = html.decode_entities(s)
  s = s:gsub("[%c%s]+", " "):gsub("^ ", ""):gsub(" $", "")
  if max and #s > max then
    s = text.cut(s, max - 3):gsub(" $", "") .. "…"
  end
  return text.cut(s)
end

-- The title of an HTML page (og:title first, then <title>), or nil.
function M.title(page, max)
  page = page:sub(1, 262144)
  local t = og_title(page)
  if not t or not t:match("%S") then
    t = page:match("<[tT][iI][tT][lL][eE][^>]*>(.-)</[tT][iI][tT][lL][eE]%s*>")
  end
  if not t then return nil end
  t = M.clean(t, max)
  if t == "" then return nil end
  return t
end

-- A chat line that is never a command: no leading "/" (CyTube would run
-- "/me", "/clear", ...), nor leading spaces.
function M.safe_line(s)
  s = s:gsub("^[%s/]+", "")
  if s == "" then return nil end
  return s
end

return M
