-- links: says the title of a page someone links in chat (rooms where it is
-- on, see plugins.links.rooms). Once per URL per room within a window;
-- per-domain allow and deny lists; rate-limited per room and per user;
-- never for the bot's own lines, replayed history, or media links CyTube
-- already shows. Fetches through the `http` API (its SSRF guard applies).
local L = require("links")
local html = require("html")
local ratelimit = require("ratelimit")
local S = require("core.schema")

local P = { name = "links" }

-- Media hosts CyTube plays or embeds itself: a title line would repeat it.
local MEDIA_DOMAINS = {
  "youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "dai.ly", "twitch.tv", "soundcloud.com",
  "streamable.com", "docs.google.com", "drive.google.com", "imgur.com", "i.imgur.com", "bandcamp.com",
  "mixer.com", "smashcast.tv", "ustream.tv", "livestream.com", "vid.me", "odysee.com", "bitchute.com",
}
local MEDIA_EXT = { png = true, jpg = true, jpeg = true, gif = true, webp = true, mp4 = true, webm = true,
  mp3 = true, ogg = true, m3u8 = true }

local domains = S.array(S.str { check = S.nonempty }, { default = {} })
local function n(default) return S.num { default = default, check = S.range(0) } end

P.settings = {
  rooms = S.array(S.str { check = S.nonempty }, { default = {} }),  -- rooms where it is on (off elsewhere)
  allow_domains = domains,          -- non-empty: only these domains (and their subdomains)
  deny_domains = domains,           -- never these
  skip_media = S.bool { default = true },  -- skip links CyTube plays or shows itself
  window = n(3600),                 -- s: a URL's title once per room within this
  room_limit = n(5), room_seconds = n(60),  -- titles per room per this many seconds
  user_limit = n(2), user_seconds = n(60),  -- titles per user per this many seconds
  max_length = n(200),              -- bytes of the title line
  prefix = S.str { default = "" },  -- put before the title
  timeout_ms = n(5000),             -- per fetch
  max_bytes = n(262144),            -- of a page read for its title
  max_urls = n(2),                  -- URLs looked at per chat line
}

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg -- checked against P.settings, defaults filled in
  self.on = {}
  for _, r in ipairs(self.cfg.rooms) do self.on[r] = true end
  self.seen = ratelimit.cooldowns()
  self.room_rate = ratelimit.window(self.cfg.room_limit, self.cfg.room_seconds)
  self.user_rate = ratelimit.window(self.cfg.user_limit, self.cfg.user_seconds)
  self.stats = { said = 0, skipped = 0, failed = 0, limited = 0 }
end

local function has_tag(ev, tag)
  for _, t in ipairs(ev.tags or {}) do if t == tag then return true end end
  return false
end

local function bot_name(room)
  local st = rooms.get(room)
  return st and type(st.name) == "string" and st.name:lower() or nil
end

function P:is_media(url, host)
  if not self.cfg.skip_media then return false end
  if L.in_any(host, MEDIA_DOMAINS) then return true end
  local ext = url:match("^[^?#]*%.(%w+)$") or url:match("^[^?#]*%.(%w+)[?#]")
  return ext ~= nil and MEDIA_EXT[ext:lower()] == true
end

-- Why a URL is not fetched, or nil.
function P:skip_reason(url)
  local host = L.host(url)
  if not host then return "no host" end
  if self:is_media(url, host) then return "media" end
  if L.in_any(host, self.cfg.deny_domains) then return "denied" end
  if #self.cfg.allow_domains > 0 and not L.in_any(host, self.cfg.allow_domains) then return "not allowed" end
end

function P:fetch_title(url)
  local resp, err = http.get(url, { timeout_ms = self.cfg.timeout_ms, max_bytes = self.cfg.max_bytes,
    headers = { Accept = "text/html,application/xhtml+xml" } })
  if not resp then return nil, err end
  if resp.status < 200 or resp.status > 299 then return nil, "status " .. resp.status end
  local ctype = resp.headers["content-type"] or "text/html"
  if not ctype:lower():find("html", 1, true) then return nil, "not html" end
  return L.title(resp.body, self.cfg.max_length)
end

function P:on_chat(ev)
  local room = ev.room
  if not room or not self.on[room] or ev.replayed or has_tag(ev, "own") then return end
  local d = type(ev.data) == "table" and ev.data or {}
  local user, msg = d.username, d.msg
  if type(user) ~= "string" or type(msg) ~= "string" then return end
  if user:lower() == bot_name(room) or user:sub(1, 1) == "[" then return end -- the bot, or the server
  local urls = L.find_urls(html.to_text(msg), self.cfg.max_urls)
  for _, url in ipairs(urls) do
    local now = daz.now()
    local why = self:skip_reason(url)
    local key = room .. "\0" .. url
    if not why and not self.seen:check(key, now) then why = "seen" end
    if not why and self.cfg.room_limit > 0 and self.room_rate:count(room, now) >= self.cfg.room_limit then why = "room rate" end
    if not why and not self.user_rate:hit(room .. "\0" .. user:lower(), now) then why = "user rate" end
    if why then
      if why:match("rate") then self.stats.limited = self.stats.limited + 1 else self.stats.skipped = self.stats.skipped + 1 end
      daz.log.debug("%s: not fetching %s: %s", room, url, why)
    else
      self.seen:start(key, now, self.cfg.window)
      local title, err = self:fetch_title(url)
      local line = title and L.safe_line(self.cfg.prefix .. title)
      if line and self.room_rate:hit(room, daz.now()) then
        self.stats.said = self.stats.said + 1
        self.bus:publish("cytube.send", { room = room, msg = line }, { room = room, priority = 1 })
      else
        self.stats.failed = self.stats.failed + 1
        daz.log.debug("%s: no title for %s: %s", room, url, tostring(err or "empty"))
      end
    end
  end
end

function P:start()
  if next(self.on) == nil then return end -- off in every room: nothing to listen to
  self.bus:subscribe("cytube.event.chatMsg", function(ev) self:on_chat(ev) end, { concurrent = true })
end

function P:status() return self.stats end
function P:config() return self.cfg end

return P
