-- Spec helper for the CyTube rooms: start the real bin/daz against the test
-- CyTube server with a "probe" plugin that reports what it sees through
-- "RESULT <key> <json>" log lines and acts on chat commands from alice:
--   !burst N      publish N lines "line 1".."line N" with cytube.send
--   !say TEXT     request cytube.send with TEXT; reports "say"
--   !req JSON     bus:request(JSON.type, JSON.data) (room filled in); reports "req"
--   !state        reports rooms.get(room) as "state"
-- Every cytube.event.* is reported as "ev", every cytube.room.status as "status".
local h = require("helpers")
local daz = require("daz")
local cjson = require("cjson")

local M = {}

M.PROBE = [[
local cjson = require("cjson")
local function result(k, v) daz.log.info("RESULT %s %s", k, cjson.encode(v)) end
local P = { name = "probe" }
function P:init(bus, cfg) self.bus = bus; self.cfg = cfg or {} end
function P:start()
  local bus = self.bus
  if not self.cfg.quiet then
    bus:subscribe("cytube.event.*", function(ev)
      result("ev", { type = ev.type, room = ev.room, tags = ev.tags, priority = ev.priority,
                     replayed = ev.replayed == true, data = ev.data })
    end)
  end
  bus:subscribe("cytube.room.status", function(ev) result("status", ev.data) end)
  bus:subscribe("cytube.event.chatMsg", function(ev)
    if ev.replayed or type(ev.data) ~= "table" or ev.data.username ~= "alice" then return end
    local cmd, arg = ev.data.msg:match("^!(%S+)%s*(.*)$")
    if not cmd then return end
    if cmd == "burst" then
      for i = 1, tonumber(arg) do bus:publish("cytube.send", { room = ev.room, msg = "line " .. i }) end
    elseif cmd == "say" then
      local v, err = bus:request("cytube.send", { room = ev.room, msg = arg }, { timeout = 2000 })
      result("say", { ok = v ~= nil, err = err, lines = v and v.lines })
    elseif cmd == "req" then
      local req = cjson.decode(arg)
      req.data.room = req.data.room or ev.room
      local v, err = bus:request(req.type, req.data, { timeout = 2000 })
      result("req", { type = req.type, ok = v ~= nil, err = err })
    elseif cmd == "state" then
      result("state", rooms.get(ev.room))
    end
  end)
end
return P
]]

-- Lua source for a value (tables with string or list keys, scalars).
local function lua_text(v)
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t ~= "table" then return tostring(v) end
  local parts = {}
  for i, x in ipairs(v) do parts[#parts + 1] = lua_text(x) end
  for k, x in pairs(v) do
    if type(k) ~= "number" then parts[#parts + 1] = ("[%q] = %s"):format(k, lua_text(x)) end
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end
M.lua_text = lua_text

-- Start daz. opts.rooms: list of room tables; opts.core: extra core keys;
-- opts.probe: plugins.probe config; opts.plugins: more plugin sources.
function M.start_bot(srv, opts)
  opts = opts or {}
  local plugins = { probe = M.PROBE }
  for k, v in pairs(opts.plugins or {}) do plugins[k] = v end
  local dir = daz.plugin_dir(plugins)
  local core = { server = srv.url, login_delay_ms = 100, rooms = opts.rooms or {} }
  for k, v in pairs(opts.core or {}) do core[k] = v end
  local config = ("return { plugin_dirs = { %q }, log = { level = %q }, core = %s, plugins = { probe = %s } }")
    :format(dir, opts.log_level or "info", lua_text(core), lua_text(opts.probe or {}))
  return daz.start({ config = config, keep_backoff = opts.keep_backoff })
end

-- Every RESULT line with `key`, decoded, in log order.
function M.results(p, key)
  local out, prefix = {}, "RESULT " .. key .. " "
  for _, l in ipairs(p.lines()) do
    if type(l.msg) == "string" and l.msg:sub(1, #prefix) == prefix then
      out[#out + 1] = cjson.decode(l.msg:sub(#prefix + 1))
    end
  end
  return out
end

-- Wait for a RESULT `key` whose value satisfies pred (default: any).
function M.wait_result(p, key, pred, timeout, what)
  return h.wait_until(function()
    for _, v in ipairs(M.results(p, key)) do
      if not pred or pred(v) then return v end
    end
    if not p.running() then error("daz exited:\n" .. p.output()) end
  end, timeout or 10, what or ("RESULT " .. key))
end

-- Wait until `channel` reports state `state` (default "joined") for the
-- n-th time (default 1).
function M.wait_state(p, channel, state, timeout, n)
  state, n = state or "joined", n or 1
  return h.wait_until(function()
    local seen = 0
    for _, v in ipairs(M.results(p, "status")) do
      if v.channel == channel and v.state == state then
        seen = seen + 1
        if seen >= n then return v end
      end
    end
    if not p.running() then error("daz exited:\n" .. p.output()) end
  end, timeout or 10, ("%s to be %s (#%d)"):format(channel, state, n))
end

-- Events the probe saw, filtered by type (and room).
function M.events(p, type_, room)
  local out = {}
  for _, v in ipairs(M.results(p, "ev")) do
    if (not type_ or v.type == type_) and (not room or v.room == room) then out[#out + 1] = v end
  end
  return out
end

function M.has_tag(ev, tag)
  for _, t in ipairs(ev.tags or {}) do if t == tag then return true end end
  return false
end

-- The room's state through rooms.get, via the probe's !state command.
function M.state(p, srv, channel)
  local before = #M.results(p, "state")
  srv:chat(channel, "alice", "!state", { raw = true })
  return h.wait_until(function()
    local all = M.results(p, "state")
    if #all > before then return all[#all] end
  end, 10, "the room state of " .. channel)
end

-- Events the server received from the bot (user name `who`) in channel.
function M.sent(srv, channel, event, who)
  local out = {}
  for _, e in ipairs(srv:received(channel)) do
    if (not event or e.event == event) and (not who or e.user == who or e.user == cjson.null) then
      out[#out + 1] = e
    end
  end
  return out
end

-- UTF-16 length of a UTF-8 string.
function M.utf16_len(s)
  local n = 0
  for _, cp in utf8.codes(s) do n = n + (cp > 0xFFFF and 2 or 1) end
  return n
end

return M
