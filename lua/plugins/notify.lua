-- notify: webhook notifications. Each hook (plugins.notify.hooks.<name>)
-- has a URL, a format ("discord": {content}, or "json": {event, room, text,
-- ...}), the rooms it listens to (default all) and the events it wants:
--   now_playing  the media changed (title + link; none for replayed history)
--   mention      a chat line names the bot
--   keyword      a chat line contains one of the hook's keywords
--   joined, lost, kicked   the bot joined a room, lost it, was kicked
-- A post that fails with 5xx, a timeout or a connection error goes to the
-- retry queue as `http.post.failed` (replayed as a `notify.post` request,
-- with the retry plugin's backoff and dead letters); a 4xx is not retried
-- and is logged once.
local html = require("html")
local text = require("text")

local P = { name = "notify" }

local EVENTS = { now_playing = true, mention = true, keyword = true, joined = true, lost = true, kicked = true }
local HOOK_KEYS = { url = "string", format = "string", rooms = "table", events = "table", keywords = "table",
                    username = "string" }
local MAX_CONTENT = 2000 -- Discord's limit for content

local function fail(fmt, ...) error(fmt:format(...), 0) end

local function list_of_strings(v, where)
  for i, s in pairs(v) do
    if math.type(i) ~= "integer" or type(s) ~= "string" then fail("%s: expected a list of strings", where) end
  end
end

local function check_hook(name, h)
  local where = "plugins.notify.hooks." .. name
  if type(h) ~= "table" then fail("%s: expected a table", where) end
  for k, v in pairs(h) do
    local want = HOOK_KEYS[k]
    if not want then fail("%s.%s: unknown key", where, k) end
    if type(v) ~= want then fail("%s.%s: expected a %s, got %s", where, k, want, type(v)) end
    if want == "table" then list_of_strings(v, where .. "." .. k) end
  end
  if type(h.url) ~= "string" or not h.url:match("^https?://[^/%s]+") then
    fail("%s.url: must be an http:// or https:// URL", where)
  end
  local format = h.format or "discord"
  if format ~= "discord" and format ~= "json" then fail("%s.format: must be discord or json", where) end
  local events = {}
  for _, e in ipairs(h.events or { "now_playing" }) do
    if not EVENTS[e] then fail("%s.events: unknown event %q", where, e) end
    events[e] = true
  end
  local rooms
  if h.rooms then
    rooms = {}
    for _, r in ipairs(h.rooms) do rooms[r] = true end
  end
  local keywords = {}
  for _, k in ipairs(h.keywords or {}) do keywords[#keywords + 1] = k:lower() end
  if events.keyword and #keywords == 0 then fail("%s.keywords: the keyword event needs keywords", where) end
  return { name = name, url = h.url, format = format, events = events, rooms = rooms, keywords = keywords,
           username = h.username }
end

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg or {}
  for k in pairs(self.cfg) do
    if k ~= "enabled" and k ~= "hooks" and k ~= "timeout_ms" then fail("plugins.notify.%s: unknown key", k) end
  end
  if self.cfg.timeout_ms ~= nil and math.type(self.cfg.timeout_ms) ~= "integer" then
    fail("plugins.notify.timeout_ms: expected an integer")
  end
  self.timeout_ms = self.cfg.timeout_ms or 5000
  self.hooks = {}
  local names = {}
  for name in pairs(self.cfg.hooks or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do self.hooks[#self.hooks + 1] = check_hook(name, self.cfg.hooks[name]) end
  self.media = {}     -- room -> the last media key announced
  self.state = {}     -- room -> the last room state seen
  self.refused = {}   -- hook -> the 4xx status last logged
  self.seq = 0
  self.stats = { posted = 0, failed = 0, refused = 0, queued = 0 }
end

local function has_tag(ev, tag)
  for _, t in ipairs(ev.tags or {}) do if t == tag then return true end end
  return false
end

local function bot_name(room)
  local st = rooms.get(room)
  return st and type(st.name) == "string" and st.name or nil
end

-- Where CyTube's media (type, id) can be watched, when it is a public site.
local function media_link(kind, id)
  if type(id) ~= "string" then return nil end
  if kind == "yt" then return "https://youtu.be/" .. id end
  if kind == "vi" then return "https://vimeo.com/" .. id end
  if kind == "dm" then return "https://www.dailymotion.com/video/" .. id end
  if kind == "tw" then return "https://twitch.tv/" .. id end
  if id:match("^https?://") then return id end
  return nil
end

local function one_line(s, max)
  s = tostring(s or ""):gsub("[%c]+", " ")
  return text.cut(s, max)
end

function P:body(hook, kind, room, line, extra)
  if hook.format == "discord" then
    local b = { content = text.cut(line, MAX_CONTENT) }
    if hook.username then b.username = hook.username end
    return b
  end
  local b = { event = kind, room = room, text = line, time = daz.now() }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

-- One POST; returns "ok", "refused" (4xx: not worth retrying) or nil, err.
function P:post(hook_name, url, body)
  local resp, err = http.post(url, body, { timeout_ms = self.timeout_ms })
  if not resp then return nil, err end
  if resp.status >= 200 and resp.status < 300 then
    self.refused[hook_name] = nil
    self.stats.posted = self.stats.posted + 1
    return "ok"
  end
  if resp.status >= 400 and resp.status < 500 then
    self.stats.refused = self.stats.refused + 1
    if self.refused[hook_name] ~= resp.status then
      self.refused[hook_name] = resp.status
      daz.log.warn("hook %s refused a post with %d; not retried", hook_name, resp.status)
    end
    return "refused"
  end
  return nil, "status " .. resp.status
end

function P:send(hook, kind, room, line, extra)
  local body = self:body(hook, kind, room, line, extra)
  local ok, err = self:post(hook.name, hook.url, body)
  if ok then return end
  self.stats.failed = self.stats.failed + 1
  self.seq = self.seq + 1
  local id = ("notify:%s:%d:%.6f"):format(hook.name, self.seq, daz.now())
  self.stats.queued = self.stats.queued + 1
  daz.log.info("hook %s failed (%s); queued for retry", hook.name, tostring(err))
  self.bus:publish("http.post.failed", {
    operation = "http.post", event_type = "notify.post", error = tostring(err), correlation_id = id,
    payload = { hook = hook.name, url = hook.url, body = body },
  })
end

function P:notify(kind, room, line, extra, match)
  for _, hook in ipairs(self.hooks) do
    if hook.events[kind] and (not hook.rooms or hook.rooms[room]) and (not match or match(hook)) then
      self:send(hook, kind, room, line, extra)
    end
  end
end

function P:on_media(ev)
  if ev.replayed or type(ev.data) ~= "table" then return end
  local d, room = ev.data, ev.room
  local key = tostring(d.type) .. ":" .. tostring(d.id)
  if self.media[room] == key then return end -- the same media again: one post per change
  self.media[room] = key
  local title = one_line(d.title or d.id or "?", 300)
  local link = media_link(d.type, d.id)
  local line = ("Now playing in %s: %s%s"):format(room, title, link and (" — " .. link) or "")
  self:notify("now_playing", room, line, { title = title, url = link, media_type = d.type, media_id = d.id })
end

local function mentions(msg, name)
  if not name or name == "" then return false end
  local lower, n = msg:lower(), name:lower()
  local i = 1
  while true do
    local s, e = lower:find(n, i, true)
    if not s then return false end
    local before, after = lower:sub(s - 1, s - 1), lower:sub(e + 1, e + 1)
    if not before:match("[%w_]") and not after:match("[%w_]") then return true end
    i = e + 1
  end
end

function P:on_chat(ev)
  if ev.replayed or has_tag(ev, "own") or type(ev.data) ~= "table" then return end
  local d, room = ev.data, ev.room
  if type(d.username) ~= "string" or type(d.msg) ~= "string" then return end
  local me = bot_name(room)
  if me and d.username:lower() == me:lower() then return end
  if d.username:sub(1, 1) == "[" then return end -- the server's own lines
  local msg = one_line(html.to_text(d.msg), 1500)
  local line = ("[%s] %s: %s"):format(room, d.username, msg)
  local extra = { user = d.username, message = msg }
  if mentions(msg, me) then self:notify("mention", room, line, extra) end
  local lower = msg:lower()
  self:notify("keyword", room, line, extra, function(hook)
    if hook.events.mention and mentions(msg, me) then return false end -- said once already
    for _, k in ipairs(hook.keywords) do
      if lower:find(k, 1, true) then return true end
    end
    return false
  end)
end

function P:on_status(ev)
  local d = type(ev.data) == "table" and ev.data or {}
  local room = d.channel or ev.room
  if type(room) ~= "string" then return end
  local state, detail = d.state, tostring(d.detail or "")
  local before = self.state[room]
  self.state[room] = state
  if state == "joined" and before ~= "joined" then
    self:notify("joined", room, ("Joined %s"):format(room))
  elseif before == "joined" and state ~= "joined" then
    if detail:match("^kicked") then
      self:notify("kicked", room, ("Kicked from %s: %s"):format(room, one_line(detail, 300)), { detail = detail })
    else
      self:notify("lost", room, ("Lost %s: %s"):format(room, one_line(detail, 300)), { detail = detail })
    end
  end
end

-- The retry queue replays a failed post as this request.
function P:on_replay(ev)
  local d = type(ev.data) == "table" and ev.data or {}
  if type(d.url) ~= "string" or type(d.body) ~= "table" then return ev:respond({ dropped = "bad payload" }) end
  local ok, err = self:post(tostring(d.hook or "?"), d.url, d.body)
  if ok then return ev:respond({ outcome = ok }) end
  ev:respond(nil, err)
end

function P:start()
  local bus = self.bus
  bus:subscribe("notify.post", function(ev) self:on_replay(ev) end, { concurrent = true })
  if #self.hooks == 0 then return end
  bus:subscribe("cytube.event.changeMedia", function(ev) self:on_media(ev) end, { concurrent = true })
  bus:subscribe("cytube.event.chatMsg", function(ev) self:on_chat(ev) end, { concurrent = true })
  bus:subscribe("cytube.room.status", function(ev) self:on_status(ev) end, { concurrent = true })
end

function P:status() return self.stats end
function P:config() return self.cfg end

return P
