-- Spec helper for the feature plugins (spec/plugins/): start the real
-- bin/daz with the shipped lua/plugins plus test plugins, in one room of the
-- test CyTube server, against a private database.
local h = require("helpers")
local daz = require("daz")
local sql = require("sqlspec")
local R = require("rooms")
local cjson = require("cjson")

local M = {}

-- After a spec file: stop daz and the test server, drop the spec's database.
-- A shipped plugin, loaded and initialised (without a bus) outside daz, its
-- settings checked against its declared schema the way the plugin manager
-- does; a problem raises "plugins.<name>.<key>: ..." (one per line).
function M.init_plugin(name, cfg)
  local S = require("core.schema")
  local P = dofile(h.root .. "/lua/plugins/" .. name .. ".lua")
  local fields = { enabled = S.bool {} }
  for k, v in pairs(P.settings or {}) do fields[k] = v end
  local out, problems = S.check(S.record(fields, { default = {} }), cfg, "plugins." .. name)
  if not out then error(table.concat(problems, "\n"), 0) end
  P:init(nil, out)
  return P
end

function M.cleanup(p, srv, dbname)
  if p and p.running() then p.stop_clean() end
  if srv then srv:stop() end
  if dbname then sql.drop_db(dbname) end
  h.cleanup_tmp()
end

M.PRELUDE = sql.PRELUDE

-- opts: url (database), plugins (name -> test plugin source), config
-- (plugins.* table), rooms (default: dazbot in testroom), core (extra keys).
function M.start(srv, opts)
  local dir = daz.plugin_dir(opts.plugins or {})
  local core = {
    server = srv.url, login_delay_ms = 100,
    rooms = opts.rooms or { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
    database = { url = opts.url, flush_ms = 50 },
  }
  for k, v in pairs(opts.core or {}) do core[k] = v end
  local config = ("return { plugin_dirs = { %q, %q }, log = { level = %q }, core = %s, plugins = %s }")
    :format(h.root .. "/lua/plugins", dir, opts.log_level or "info", R.lua_text(core), R.lua_text(opts.config or {}))
  local p = daz.start({ config = config, env = opts.env })
  p.plugin_dir = dir
  return p
end

-- A user as CyTube announces it (addUser) to everyone in the channel.
function M.add_user(srv, channel, name, rank)
  srv:emit(channel, "addUser", { name = name, rank = rank, profile = { image = "", text = "" },
    meta = { afk = false, muted = false } })
end

-- A PM from `from` to the bot.
function M.pm(srv, channel, from, to, msg)
  srv:emit(channel, "pm", { username = from, msg = msg, to = to, meta = {}, time = os.time() * 1000 }, to)
end

-- Poll fn() every 0.1 s until it returns a truthy value; raises after
-- timeout_s. (Each poll runs curl or psql: a gentler pace than
-- helpers.wait_until's keeps a loaded machine responsive.)
function M.wait(fn, timeout_s, what)
  return h.wait_until(fn, timeout_s, what, 0.1)
end

-- Wait for the bot to send `event` (chatMsg or pm) whose msg matches pattern,
-- newer than `since` (a seq); returns the received entry.
function M.wait_sent(srv, channel, event, pattern, timeout, since)
  local cursor, seen = since, {}
  local ok, found = pcall(M.wait, function()
    for _, e in ipairs(srv:received(channel, cursor)) do
      cursor = e.seq
      if e.event == event and type(e.data) == "table" and type(e.data.msg) == "string" then
        if e.data.msg:find(pattern) then return e end
        seen[#seen + 1] = e.data.msg
      end
    end
  end, timeout or 10, ("the bot to send %s matching %q"):format(event, pattern))
  if not ok then
    -- Say what it did send: a near miss is most of the diagnosis.
    error(("%s; it sent instead: %s"):format(found, #seen > 0 and table.concat(seen, " | ") or "nothing"), 2)
  end
  return found
end

-- Everything the bot sent as `event` (chatMsg/pm), msg texts in order.
function M.sent(srv, channel, event)
  local out = {}
  for _, e in ipairs(srv:received(channel)) do
    if e.event == event and type(e.data) == "table" then out[#out + 1] = e.data end
  end
  return out
end

-- The newest seq of the server's received log (a cursor for wait_sent).
function M.cursor(srv, channel)
  local all = srv:received(channel)
  return #all > 0 and all[#all].seq or nil
end

-- Rows of a query as tables (psql JSON; NULL is nil), for checking what plugins stored.
function M.rows(url, query)
  local out = sql.psql(url, "SELECT coalesce(json_agg(t), '[]') FROM (" .. query .. ") t")
  local rows = cjson.decode(out)
  for _, r in ipairs(rows) do
    for k, v in pairs(r) do if v == cjson.null then r[k] = nil end end  -- SQL NULL reads as nil
  end
  return rows
end

function M.wait_rows(url, query, pred, timeout, what)
  return M.wait(function()
    local rows = M.rows(url, query)
    if pred(rows) then return rows end
  end, timeout or 10, what or query)
end

-- Warnings and errors the feature plugins logged (each "component: msg"),
-- but those matching `expected` (a Lua pattern).
M.PLUGINS = { eventfilter = true, commands = true, usertracker = true, mediatracker = true, analytics = true,
  links = true, notify = true }
function M.plugin_problems(p, expected)
  local out = {}
  for _, l in ipairs(p.lines()) do
    if M.PLUGINS[l.component] and (l.level == "warn" or l.level == "error")
        and not (expected and tostring(l.msg):find(expected)) then
      out[#out + 1] = l.component .. ": " .. tostring(l.msg)
    end
  end
  return out
end

return M
