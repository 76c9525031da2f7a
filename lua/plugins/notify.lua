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
local S = require("core.schema")

local P = { name = "notify" }

local EVENTS = { "now_playing", "mention", "keyword", "joined", "lost", "kicked" }
local MAX_CONTENT = 2000 -- Discord's limit for content

local function url_check(v)
  if not v:match("^https?://[^/%s]+") then return "must be an http:// or https:// URL" end
end

local function hook_check(h)
  for _, e in ipairs(h.events) do
    if e == "keyword" and #h.keywords == 0 then return "the keyword event needs keywords" end
  end
end

P.settings = {
  hooks = S.map(S.record({
    url = S.str { required = true, check = url_check },
    format = S.enum({ "discord", "json" }, { default = "discord" }),  -- discord: {content}; json: {event, room, text, ...}
    rooms = S.array(S.str {}),                                        -- absent: every room
    events = S.array(S.enum(EVENTS), { default = { "now_playing" } }),
    keywords = S.array(S.str { check = S.nonempty }, { default = {} }),  -- for the keyword event, any case
    username = S.str {},                                              -- Discord's display name for the post
  }, { check = hook_check }), { default = {} }),
  timeout_ms = S.int { default = 5000, check = S.positive },           -- per post
}

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg -- checked against P.settings, defaults filled in
  self.timeout_ms = cfg.timeout_ms
  self.hooks = {}
  local names = {}
  for name in pairs(cfg.hooks) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local h = cfg.hooks[name]
    local events, keywords, rooms = {}, {}, nil
    for _, e in ipairs(h.events) do events[e] = true end
    for _, k in ipairs(h.keywords) do keywords[#keywords + 1] = k:lower() end
    if h.rooms then
      rooms = {}
      for _, r in ipairs(h.rooms) do rooms[r] = true end
    end
    self.hooks[#self.hooks + 1] = { name = name, url = h.url, format = h.format, events = events, rooms = rooms,
                                    keywords = keywords, username = h.username }
  end
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
