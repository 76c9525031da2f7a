-- commands: the bot's own commands — about, help, uptime, and for bot
-- admins debug and reload. Registered with EventFilter (lua/lib/commands.lua).
local commands = require("commands")
local duration = require("duration")

local S = require("core.schema")

local P = { name = "commands", depends = { "eventfilter" } }

P.settings = {
  cooldown = S.num { check = S.range(0) },  -- s per (user, command); absent: EventFilter's default
}

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg
end

local function version()
  return daz.version or "?", daz.build or "?"
end

local function rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return kb and tonumber(kb) / 1024
end

local function count_plugins()
  local n, failing = 0, 0
  for _, s in ipairs(daz.plugins.status()) do
    n = n + 1
    if s.state ~= "started" or s.degraded then failing = failing + 1 end
  end
  return n, failing
end

local function about()
  local v, build = version()
  local plugins = count_plugins()
  local room_list = rooms.list()
  local joined = 0
  for _, ch in ipairs(room_list) do
    local st = rooms.get(ch)
    if st and st.joined then joined = joined + 1 end
  end
  local mem = rss_mb()
  return ("Daz %s (build %s), up %s, memory %s (Lua %.1f MB), %d plugins, %d/%d rooms joined"):format(
    v, build, duration.format(daz.uptime()), mem and ("%.1f MB"):format(mem) or "?",
    collectgarbage("count") / 1024, plugins, joined, #room_list)
end

function P:help(cmd)
  local bus = self.bus
  local want = cmd.args[1]
  if want then
    want = want:gsub("^%p", "")
    local r, err = bus:request("eventfilter.list", { name = want }, { timeout = 2000 })
    if not r then return nil, err end
    local c = r.commands[1]
    if not c or (c.admin_only and not cmd.admin) then return "help: no command by that name" end
    local aliases = #c.aliases > 0 and (" (also: " .. table.concat(c.aliases, ", ") .. ")") or ""
    return ("usage: %s — %s%s"):format(c.usage, c.description, aliases)
  end
  local r, err = bus:request("eventfilter.list", { rank = cmd.rank, admin = cmd.admin }, { timeout = 2000 })
  if not r then return nil, err end
  local names = {}
  for _, c in ipairs(r.commands) do names[#names + 1] = (r.prefix or "") .. c.name end
  return "commands: " .. table.concat(names, " ") .. " — help <command> for more"
end

local function debug_text()
  local parts = {}
  local depth, dropped, busiest, busiest_depth = 0, 0, nil, 0
  for t, s in pairs(daz.bus_stats()) do
    depth = depth + s.depth
    dropped = dropped + s.dropped
    if s.depth > busiest_depth then busiest, busiest_depth = t, s.depth end
  end
  parts[#parts + 1] = ("bus: %d queued, %d dropped%s"):format(depth, dropped,
    busiest and (" (most queued: %s %d)"):format(busiest, busiest_depth) or "")
  local ok, st = pcall(db.stats)
  if ok and st then
    parts[#parts + 1] = ("db: %d/%d connected, %d queued, %d errors; writer %d buffered, %d lost; spool %d rows"):format(
      st.pool.connected, st.pool.size, st.pool.queued, st.pool.errors,
      st.writer.rows_buffered, st.writer.rows_lost, st.spool.rows)
  end
  local rs = {}
  for _, ch in ipairs(rooms.list()) do
    local r = rooms.get(ch)
    rs[#rs + 1] = ("%s %s"):format(ch, r and r.state or "?")
  end
  parts[#parts + 1] = "rooms: " .. (#rs > 0 and table.concat(rs, ", ") or "none")
  local errs = {}
  for _, s in ipairs(daz.plugins.status()) do
    if (s.errors or 0) > 0 or s.state ~= "started" then
      errs[#errs + 1] = ("%s %s/%d err"):format(s.name, s.state, s.errors or 0)
    end
  end
  parts[#parts + 1] = "plugins: " .. (#errs > 0 and table.concat(errs, ", ") or "all fine")
  return table.concat(parts, "; ")
end

local function reload(cmd)
  local which = cmd.args[1]
  if which then
    if not which:match("^[%w_%-]+$") then return "reload: not a plugin name" end
    local known = false
    for _, s in ipairs(daz.plugins.status()) do if s.name == which then known = true end end
    if not known then return "reload: no plugin by that name" end
  end
  daz.plugins.reload(which)
  return which and ("reloading plugin " .. which) or "reloading every changed plugin"
end

function P:start()
  local bus, cd = self.bus, self.cfg.cooldown
  local log = daz.log
  commands.register(bus, { plugin = P.name, name = "about", description = "version, uptime, memory, plugins and rooms",
    usage = "about", cooldown = cd }, function() return about() end, log)
  commands.register(bus, { plugin = P.name, name = "help", aliases = { "commands" },
    description = "the commands you may use, or how to use one", usage = "help [command]", cooldown = cd },
    function(c) return self:help(c) end, log)
  commands.register(bus, { plugin = P.name, name = "uptime", description = "how long the bot has been running",
    usage = "uptime", cooldown = cd }, function() return "up " .. duration.format(daz.uptime(), 3) end, log)
  commands.register(bus, { plugin = P.name, name = "debug", admin_only = true, cooldown = 0,
    description = "queues, drops, database, spool, rooms, plugin errors", usage = "debug" },
    function() return debug_text() end, log)
  commands.register(bus, { plugin = P.name, name = "reload", admin_only = true, cooldown = 0,
    description = "reload one plugin, or every changed one", usage = "reload [plugin]" },
    function(c) return reload(c) end, log)
end

function P:config() return self.cfg end

return P
