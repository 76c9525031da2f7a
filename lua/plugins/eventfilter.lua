-- eventfilter: finds commands in chat and PMs, checks who may run them and
-- how often, and runs them as plugin.command.<name> requests.
--
-- Registry (over the bus; see README "Plugins"):
--   eventfilter.register   {plugin, name, aliases, description, usage, min_rank, admin_only, cooldown}
--   eventfilter.unregister {plugin, name}
--   eventfilter.list       {rank?, admin?, name?} -> {commands = {...}}
-- A command runs as a request plugin.command.<name> with data
--   {command, alias, args, text, user, rank, room, pm, admin}
-- and the event's room set, so ev:reply(text) answers in the channel or by
-- PM. The answer to the request ({ok=true} or an error) and how long it took
-- go to daz_eventfilter_history.
local html = require("html")
local cut = require("text").cut
local args = require("args")
local ratelimit = require("ratelimit")
local cjson = require("cjson")

local S = require("core.schema")

local P = { name = "eventfilter" }

local function prefix_check(v)
  if #v < 1 or #v > 8 or v:find("%s") then return "1 to 8 characters, no spaces" end
end

local names = S.array(S.str {}, { default = {} })

P.settings = {
  prefix = S.str { default = "!", check = prefix_check },
  default_cooldown = S.num { default = 5, check = S.range(0) },  -- s, per (user, command), when a command names none
  user_limit = S.num { default = 5 },            -- commands per user ...
  user_window = S.num { default = 10, check = S.positive },  -- ... per this many seconds
  room_limit = S.num { default = 20 },           -- commands per room ...
  room_window = S.num { default = 10, check = S.positive },  -- ... per this many seconds
  spam_repeat = S.num { default = 4 },           -- the same command line this many times ...
  spam_flood = S.num { default = 10 },           -- ... or more than this many command attempts ...
  spam_window = S.num { default = 15, check = S.positive },  -- ... within this many seconds
  spam_ignore = S.num { default = 60 },          -- s the spammer is ignored for
  notice_interval = S.num { default = 10 },      -- s between two refusal notices to one user
  admins = names,                                -- user names with every right
  admins_exempt = S.bool { default = true },     -- admins skip cooldowns and rate limits
  ignore_users = names,                          -- other bots
  command_timeout = S.num { default = 10000, check = S.positive },  -- ms a command may take
  max_args = S.num { default = 16 },
  max_arg_len = S.num { default = 200 },
  max_input = S.num { default = 1000 },          -- bytes of a chat line looked at
  history = S.bool { default = true },           -- record executions in daz_eventfilter_history ...
  history_days = S.num { default = 90, check = S.range(0) },  -- ... and keep them this many days (0: forever)
}

local NAME_PATTERN = "^[%w_%-]+$"

local function lower(s) return type(s) == "string" and s:lower() or s end

local function has_tag(ev, tag)
  for _, t in ipairs(ev.tags or {}) do if t == tag then return true end end
  return false
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do if type(v) == "string" then s[v:lower()] = true end end
  return s
end

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg
  self.admins = set_of(self.cfg.admins)
  self.ignored = set_of(self.cfg.ignore_users)
  self.commands = self.commands or {}   -- name -> spec
  self.aliases = self.aliases or {}     -- alias or name -> name
  self.user_limit = ratelimit.window(self.cfg.user_limit, self.cfg.user_window)
  self.room_limit = ratelimit.window(self.cfg.room_limit, self.cfg.room_window)
  self.flood = ratelimit.window(self.cfg.spam_flood, self.cfg.spam_window)
  self.cooldowns = ratelimit.cooldowns()
  self.notices = ratelimit.cooldowns()
  self.spam_until = ratelimit.cooldowns()
  self.last_line = {}                  -- user key -> {line, count, first}
  self.last_line_n = 0
  self.stats = { commands = 0, ok = 0, failed = 0, refused = 0, spam_ignored = 0, ignored = 0 }
end

function P:save() return { commands = self.commands, aliases = self.aliases } end
function P:restore(state)
  self.commands, self.aliases = state.commands or {}, state.aliases or {}
end

-- ------------------------------------------------------------ registry

local function check_spec(d)
  if type(d) ~= "table" then return nil, "registration must be a table" end
  if type(d.plugin) ~= "string" or d.plugin == "" then return nil, "plugin (the owner's name) is required" end
  if type(d.name) ~= "string" or not d.name:match(NAME_PATTERN) or #d.name > 32 then
    return nil, "name must be 1-32 letters, digits, _ or -"
  end
  local spec = {
    plugin = d.plugin, name = d.name:lower(), aliases = {},
    description = d.description or "", usage = d.usage or d.name:lower(),
    min_rank = d.min_rank or 0, admin_only = d.admin_only == true, cooldown = d.cooldown,
  }
  if type(spec.description) ~= "string" or #spec.description > 200 then return nil, "description: a string of at most 200 bytes" end
  if type(spec.usage) ~= "string" or #spec.usage > 200 then return nil, "usage: a string of at most 200 bytes" end
  if type(spec.min_rank) ~= "number" or spec.min_rank < -1 or spec.min_rank > 255 then
    return nil, "min_rank: a number from -1 to 255"
  end
  if spec.cooldown ~= nil and (type(spec.cooldown) ~= "number" or spec.cooldown < 0 or spec.cooldown > 86400) then
    return nil, "cooldown: seconds from 0 to 86400"
  end
  if d.aliases ~= nil and type(d.aliases) ~= "table" then return nil, "aliases: a list of names" end
  for i, a in ipairs(d.aliases or {}) do
    if i > 8 then return nil, "aliases: at most 8" end
    if type(a) ~= "string" or not a:match(NAME_PATTERN) or #a > 32 then return nil, "aliases: names of 1-32 letters, digits, _ or -" end
    spec.aliases[#spec.aliases + 1] = a:lower()
  end
  return spec
end

-- A name or alias already taken by another plugin's command: its owner.
function P:conflict(spec)
  for _, word in ipairs({ spec.name, table.unpack(spec.aliases) }) do
    local holder = self.aliases[word] and self.commands[self.aliases[word]]
    if holder and not (holder.plugin == spec.plugin and holder.name == spec.name) then
      return ("%q is already registered by plugin %s (command %s)"):format(word, holder.plugin, holder.name)
    end
  end
end

function P:drop(name)
  local old = self.commands[name]
  if not old then return end
  self.commands[name] = nil
  for word, target in pairs(self.aliases) do
    if target == name then self.aliases[word] = nil end
  end
end

function P:register(ev)
  local spec, err = check_spec(ev.data)
  if not spec then return ev:respond(nil, "eventfilter.register: " .. err) end
  err = self:conflict(spec)
  if err then
    daz.log.error("registration refused: %s", err)
    return ev:respond(nil, "duplicate command: " .. err)
  end
  self:drop(spec.name)
  self.commands[spec.name] = spec
  self.aliases[spec.name] = spec.name
  for _, a in ipairs(spec.aliases) do self.aliases[a] = spec.name end
  ev:respond({ ok = true, name = spec.name })
  local _, dberr = db:exec([[
    INSERT INTO daz_eventfilter_commands
      (name, plugin, aliases, description, usage, min_rank, admin_only, cooldown_s, active, updated_at)
    VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, true, now())
    ON CONFLICT (name) DO UPDATE SET plugin = EXCLUDED.plugin, aliases = EXCLUDED.aliases,
      description = EXCLUDED.description, usage = EXCLUDED.usage, min_rank = EXCLUDED.min_rank,
      admin_only = EXCLUDED.admin_only, cooldown_s = EXCLUDED.cooldown_s, active = true, updated_at = now()]],
    spec.name, spec.plugin, #spec.aliases > 0 and cjson.encode(spec.aliases) or "[]", spec.description,
    spec.usage, spec.min_rank, spec.admin_only, self:cooldown_of(spec))
  if dberr then daz.log.warn("cannot store command %s: %s", spec.name, tostring(dberr)) end
end

function P:unregister(ev)
  local d = ev.data or {}
  local spec = type(d.name) == "string" and self.commands[d.name:lower()]
  if spec and spec.plugin == d.plugin then
    self:drop(spec.name)
    if ev.id then ev:respond({ ok = true }) end
    db:exec("UPDATE daz_eventfilter_commands SET active = false, updated_at = now() WHERE name = $1", spec.name)
  elseif ev.id then
    ev:respond(nil, "no such command of that plugin")
  end
end

function P:cooldown_of(spec)
  return spec.cooldown or self.cfg.default_cooldown
end

local function public(spec, cooldown)
  return { name = spec.name, aliases = spec.aliases, description = spec.description, usage = spec.usage,
           min_rank = spec.min_rank, admin_only = spec.admin_only, cooldown = cooldown, plugin = spec.plugin }
end

-- {rank?, admin?} lists what such a caller may run; {name} finds one command.
function P:list(ev)
  local d = type(ev.data) == "table" and ev.data or {}
  if type(d.name) == "string" then
    local name = self.aliases[d.name:lower()]
    local spec = name and self.commands[name]
    return ev:respond({ commands = spec and { public(spec, self:cooldown_of(spec)) } or {} })
  end
  local out = {}
  for _, spec in pairs(self.commands) do
    local allowed = d.admin == true or
      (not spec.admin_only and (type(d.rank) ~= "number" or d.rank >= spec.min_rank))
    if allowed then out[#out + 1] = public(spec, self:cooldown_of(spec)) end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  ev:respond({ commands = out, prefix = self.cfg.prefix })
end

-- ------------------------------------------------------------ commands

local function user_rank(state, user)
  local users = state and state.users
  if type(users) ~= "table" then return 0 end
  local u = users[user]
  if not u then
    local want = user:lower()
    for name, entry in pairs(users) do
      if type(name) == "string" and name:lower() == want then u = entry; break end
    end
  end
  return u and tonumber(u.rank) or 0
end

function P:send(room, pm, user, text)
  if pm then
    self.bus:publish("cytube.send.pm", { room = room, to = user, msg = text }, { room = room, priority = 1 })
  else
    self.bus:publish("cytube.send", { room = room, msg = text }, { room = room, priority = 1 })
  end
end

-- A short reason, at most once per notice_interval per user and way (chat, PM).
function P:notice(room, pm, user, key, text)
  local now = daz.now()
  key = key .. (pm and "\0pm" or "\0chat")
  if not self.notices:check(key, now) then return end
  self.notices:start(key, now, self.cfg.notice_interval)
  self:send(room, pm, user, text)
end

function P:record(room, user, cmd, argv, pm, rank, result, err, duration_ms)
  if not self.cfg.history then return end
  local _, dberr = db:exec([[
    INSERT INTO daz_eventfilter_history (channel, username, command, args, pm, rank, result, error, duration_ms)
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)]],
    room, user, cmd, #argv > 0 and cjson.encode(argv) or "[]", pm, rank, result, err, duration_ms)
  if dberr then daz.log.warn("cannot record %s by %s: %s", cmd, user, tostring(dberr)) end
end

-- True when `user` is spamming commands (and is now ignored).
function P:spamming(key, line, now)
  if not self.spam_until:check(key, now) then return true end
  local spam = false
  if not self.flood:hit(key, now) then spam = true end
  local last = self.last_line[key]
  if last and last.line == line and now - last.first <= self.cfg.spam_window then
    last.count = last.count + 1
    if last.count >= self.cfg.spam_repeat then spam = true end
  else
    if not last then
      if self.last_line_n >= 10000 then self.last_line, self.last_line_n = {}, 0 end
      self.last_line_n = self.last_line_n + 1
    end
    self.last_line[key] = { line = line, count = 1, first = now }
  end
  if spam then
    self.spam_until:start(key, now, self.cfg.spam_ignore)
    self.last_line[key] = nil
    return true, "new"
  end
  return false
end

function P:handle(ev, pm)
  local d = ev.data
  local room = ev.room
  if ev.replayed or has_tag(ev, "own") or type(d) ~= "table" or not room then return end
  local user, msg = d.username, d.msg
  if type(user) ~= "string" or user == "" or user:sub(1, 1) == "[" or type(msg) ~= "string" then return end
  if pm and type(d.to) == "string" and lower(d.to) == lower(user) then return end
  local luser = user:lower()
  if self.ignored[luser] then return end
  if #msg > self.cfg.max_input then msg = msg:sub(1, self.cfg.max_input) end
  -- Most chat is not a command: skip the HTML decoding when the prefix (as
  -- typed, or as CyTube escapes it) appears nowhere in the line.
  local prefix = self.cfg.prefix
  if not msg:find(prefix, 1, true) then
    local escaped = prefix:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")
    if escaped == prefix or not msg:find(escaped, 1, true) then return end
  end
  -- A cut (or hostile) line may end inside a character: drop the broken tail.
  local text = cut((html.to_text(msg):gsub("^%s+", "")))
  if text:sub(1, #prefix) ~= prefix then return end
  local word, rest = text:sub(#prefix + 1):match("^(%S+)%s*(.-)%s*$")
  if not word or #word > 32 then return end
  local state = rooms.get(room)
  if state and type(state.name) == "string" and state.name:lower() == luser then return end

  local now = daz.now()
  local key = room .. "\0" .. luser
  local spam, fresh = self:spamming(key, text, now)
  if spam then
    self.stats.spam_ignored = self.stats.spam_ignored + 1
    if fresh then daz.log.info("%s in %s floods commands: ignored for %ds", user, room, self.cfg.spam_ignore) end
    return
  end

  local name = self.aliases[word:lower()]
  local spec = name and self.commands[name]
  if not spec then self.stats.ignored = self.stats.ignored + 1; return end
  local rank = user_rank(state, user)
  local admin = self.admins[luser] == true
  local p = prefix .. spec.name

  local function refuse(result, reason, notice_key)
    self.stats.refused = self.stats.refused + 1
    self:notice(room, pm, user, key .. "\0" .. notice_key, reason)
    self:record(room, user, spec.name, {}, pm, rank, result, reason, nil)
  end

  if spec.admin_only and not admin then
    return refuse("denied", p .. ": only for bot admins", "denied")
  end
  if rank < spec.min_rank and not admin then
    return refuse("denied", ("%s: needs rank %g (you have %g)"):format(p, spec.min_rank, rank), "denied")
  end
  local cd_key = key .. "\0" .. spec.name
  if not (admin and self.cfg.admins_exempt) then
    local ok, wait = self.cooldowns:check(cd_key, now)
    if not ok then
      return refuse("cooldown", ("%s: wait %ds"):format(p, math.ceil(wait)), "cd" .. spec.name)
    end
    ok, wait = self.user_limit:hit(key, now)
    if not ok then
      return refuse("ratelimited", ("slow down, try again in %ds"):format(math.ceil(wait)), "rate")
    end
    ok, wait = self.room_limit:hit(room, now)
    if not ok then
      return refuse("ratelimited", ("busy, try again in %ds"):format(math.ceil(wait)), "room")
    end
  end
  local argv, aerr = args.split(rest, self.cfg.max_args, self.cfg.max_arg_len)
  if not argv then
    return refuse("invalid", ("%s: %s"):format(p, aerr), "args")
  end
  self.cooldowns:start(cd_key, now, self:cooldown_of(spec))

  self.stats.commands = self.stats.commands + 1
  local t0 = daz.uptime()
  local data = { command = spec.name, alias = word:lower(), args = argv, text = rest, user = user,
                 rank = rank, room = room, pm = pm, admin = admin }
  local resp, err = self.bus:request("plugin.command." .. spec.name, data,
    { room = room, priority = 1, timeout = self.cfg.command_timeout, tags = { "room:" .. room } })
  local duration_ms = (daz.uptime() - t0) * 1000
  local result = resp ~= nil and "ok" or (err == "timeout" and "timeout" or "error")
  if resp ~= nil then self.stats.ok = self.stats.ok + 1 else self.stats.failed = self.stats.failed + 1 end
  if err == "no responder" then
    self:notice(room, pm, user, key .. "\0gone", p .. " is not available right now")
  elseif err == "timeout" then
    self:notice(room, pm, user, key .. "\0slow", p .. " took too long")
  end
  self:record(room, user, spec.name, argv, pm, rank, result, err and tostring(err) or nil, duration_ms)
end

-- ------------------------------------------------------------ lifecycle

function P:start()
  local bus = self.bus
  self.started_at = daz.now()
  bus:subscribe("eventfilter.register", function(ev) self:register(ev) end)
  bus:subscribe("eventfilter.unregister", function(ev) self:unregister(ev) end)
  bus:subscribe("eventfilter.list", function(ev) self:list(ev) end, { concurrent = true })
  bus:subscribe("cytube.event.chatMsg", function(ev) self:handle(ev, false) end, { concurrent = true })
  bus:subscribe("cytube.event.pm", function(ev) self:handle(ev, true) end, { concurrent = true })
  if self.cfg.history_days > 0 then
    bus:every(3600 * 1000, function()
      db:exec("DELETE FROM daz_eventfilter_history WHERE executed_at < now() - make_interval(days => $1)",
        math.floor(self.cfg.history_days))
    end)
  end
  -- Commands not registered again since this start are shown as inactive.
  bus:after(30000, function()
    db:exec("UPDATE daz_eventfilter_commands SET active = false WHERE updated_at < to_timestamp($1)",
      self.started_at)
  end)
end

function P:status()
  local n = 0
  for _ in pairs(self.commands) do n = n + 1 end
  local s = { registered = n }
  for k, v in pairs(self.stats) do s[k] = v end
  return s
end

function P:config() return self.cfg end

return P
