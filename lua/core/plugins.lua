-- plugins: the plugin manager. Finds plugin files on plugin_dirs, compiles
-- each into its own _ENV, orders them by `depends`, runs init for all then
-- start for all, stops them in reverse order, and hot-reloads them.
-- Embedded in bin/daz; the C side (src/lua_host.c) hands it `core`, the
-- private functions that own slots, inboxes, tasks and bus handles.
--
-- A plugin file returns a table mirroring Go's framework.Plugin:
--   { name, depends, settings, init(self, bus, config), start(self), stop(self),
--     status(self), config(self), save(self), restore(self, state) }
-- `settings` declares plugins.<name> in the core config's schema language
-- (lua/core/schema.lua): { key = S.int { default = 5 }, ... }. It is checked
-- (unknown keys, types, checks) before any plugin runs, and by -check-config;
-- init then gets the settings with defaults filled in. Without `settings`,
-- plugins.<name> reaches init unchecked.

local S = require("core.schema")

local M = {}

local core            -- set by M.start
local records = {}    -- in start order: { name, path, mtime, slot, handle, P, config }
local by_name = {}

local function log(level, component, fmt, ...)
  if select("#", ...) > 0 then fmt = fmt:format(...) end
  core.log(level, component, fmt)
end

-- Each plugin sees the globals of the standard library, its own `daz` (whose
-- log functions carry the plugin's name), and whatever it defines itself.
-- `who.name` is filled in once the file has said what it is called.
local function make_env(who)
  local plog = {}
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    plog[level] = function(fmt, ...)
      if not core.log_enabled(level) then return end
      local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
      core.log(level, who.name, msg)
    end
  end
  local pdaz = setmetatable({
    log = plog,
    plugins = {
      status = function() return M.status() end,
      reload = function(which) core.reload(which) end,
    },
    bus_stats = core.bus_stats,
    lua_refs = core.refs,
    _bench_pcall = core.bench_pcall, -- the baseline of `make bench`
  }, { __index = daz })
  return setmetatable({ daz = pdaz }, { __index = _G })
end

local function is_list_of_strings(t)
  if type(t) ~= "table" then return false end
  for i, v in pairs(t) do
    if math.type(i) ~= "integer" or type(v) ~= "string" then return false end
  end
  return true
end

-- Compile and run a plugin file; returns the plugin table or nil, err.
local function compile(path)
  local who = { name = path }
  local chunk, err = loadfile(path, "t", make_env(who))
  if not chunk then return nil, err end
  local ok, P = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(P) end
  if type(P) ~= "table" then
    return nil, ("%s: must return a plugin table, got %s"):format(path, type(P))
  end
  if type(P.name) ~= "string" or not P.name:match("^[%w_%-]+$") then
    return nil, ("%s: the plugin table needs a name (letters, digits, _ or -)"):format(path)
  end
  if P.depends ~= nil and not is_list_of_strings(P.depends) then
    return nil, ("%s: depends must be a list of plugin names"):format(path)
  end
  if P.settings ~= nil then
    if type(P.settings) ~= "table" then
      return nil, ("%s: settings must be a table of schema nodes (lua/core/schema.lua)"):format(path)
    end
    for k, node in pairs(P.settings) do
      if type(k) ~= "string" or type(node) ~= "table" or type(node.kind) ~= "string" then
        return nil, ("%s: settings.%s is not a schema node (S.str {...}, S.int {...}, ...)"):format(path, tostring(k))
      end
    end
  end
  for _, fn in ipairs({ "init", "start", "stop", "status", "config", "save", "restore" }) do
    if P[fn] ~= nil and type(P[fn]) ~= "function" then
      return nil, ("%s: %s must be a function"):format(path, fn)
    end
  end
  who.name = P.name
  return P
end

-- Discover every plugin file; returns { name = { path, mtime, P } }, the
-- order found, and { name = path } of the files not loaded at all: <name>.lua
-- when plugins.<name>.enabled is false (so a broken disabled file is harmless).
local function discover(dirs, settings)
  local found, order, skipped = {}, {}, {}
  for i, dir in ipairs(dirs) do
    local files, err = core.listdir(dir)
    if not files then
      return nil, ("plugin_dirs[%d]: %s"):format(i, err)
    end
    for _, file in ipairs(files) do
      local path = dir .. "/" .. file
      local base = file:gsub("%.lua$", "")
      local pc = settings[base]
      if type(pc) == "table" and pc.enabled == false then
        skipped[base] = skipped[base] or path
        goto next_file
      end
      local mtime = core.mtime(path) -- before compiling: a later change is seen by reload
      local P, cerr = compile(path)
      if not P then return nil, "cannot load plugin " .. cerr end
      if found[P.name] then
        return nil, ("plugin %q is defined twice: %s and %s"):format(P.name, found[P.name].path, path)
      end
      found[P.name] = { path = path, mtime = mtime, P = P }
      order[#order + 1] = P.name
      ::next_file::
    end
  end
  return found, order, skipped
end

-- plugins.<name> checked against P.settings: the settings with defaults
-- filled in, or nil and the problem lines. Without a schema: as given.
local function check_settings(name, P, given)
  if not P.settings then return given or {} end
  local fields = { enabled = S.bool {} } -- every plugin may be switched off
  for k, node in pairs(P.settings) do fields[k] = node end
  local problems = {}
  local out = S.validate(S.record(fields, { default = {} }), given, S.join_path("plugins", name), problems)
  if #problems > 0 then return nil, problems end
  return out
end

-- Dependency order (stable: discovery order where free); errors name plugins.
local function sort(found, order, disabled)
  local sorted, state = {}, {}
  local function visit(name, chain)
    if state[name] == "done" then return true end
    if state[name] == "visiting" then
      local cycle = {}
      local from
      for i, n in ipairs(chain) do if n == name then from = i end end
      for i = from, #chain do cycle[#cycle + 1] = chain[i] end
      cycle[#cycle + 1] = name
      return nil, "plugin dependency cycle: " .. table.concat(cycle, " -> ")
    end
    state[name] = "visiting"
    chain[#chain + 1] = name
    for _, dep in ipairs(found[name].P.depends or {}) do
      if disabled[dep] then
        return nil, ("plugin %q depends on %q, which is disabled"):format(name, dep)
      end
      if not found[dep] then
        return nil, ("plugin %q depends on %q, which is not installed"):format(name, dep)
      end
      local ok, err = visit(dep, chain)
      if not ok then return nil, err end
    end
    chain[#chain] = nil
    state[name] = "done"
    sorted[#sorted + 1] = name
    return true
  end
  for _, name in ipairs(order) do
    if not disabled[name] then
      local ok, err = visit(name, {})
      if not ok then return nil, err end
    end
  end
  return sorted
end

-- Calls P[fn](P, ...) as the plugin, protected; returns ok, result_or_err.
local function call(rec, P, fn, ...)
  if not P[fn] then return true end
  return core.plugin_call(rec.slot, P[fn], P, ...)
end

local function start_one(rec, P, state_to_restore)
  rec.handle = core.bus_handle(rec.slot)
  local ok, err = call(rec, P, "init", rec.handle, rec.config)
  if not ok then return nil, "init failed: " .. tostring(err) end
  core.plugin_set_state(rec.slot, "initialized")
  if state_to_restore ~= nil then
    ok, err = call(rec, P, "restore", state_to_restore)
    if not ok then return nil, "restore failed: " .. tostring(err) end
  end
  return true
end

local function stop_one(rec)
  local ok, err = call(rec, rec.P, "stop")
  if not ok then log("error", rec.name, "stop failed: %s", err) end
  core.plugin_cancel_registrations(rec.slot)
  if rec.handle then core.bus_handle_revoke(rec.handle) end
  rec.handle = nil
end

-- check(core, config) -> settings problems, other problem: finds and
-- compiles the plugin files (running no init or start) and checks each
-- enabled plugin's settings against its schema. The settings problems (a
-- list of lines, empty when none) are config errors; the other problem (a
-- file that does not load, a dependency missing, disabled or in a cycle;
-- nil when none) is what start would report. start reuses this work.
local prepared, checked
function M.check(c, config)
  core = c
  prepared = table.pack(discover(config.plugin_dirs, config.plugins))
  checked = {}
  local found, order = prepared[1], prepared[2]
  if not found then return {}, order end
  local problems, disabled = {}, {}
  for name in pairs(prepared[3]) do disabled[name] = true end
  for _, name in ipairs(order) do
    local given = config.plugins[name]
    if type(given) == "table" and given.enabled == false then
      disabled[name] = true
    else
      local out, p = check_settings(name, found[name].P, given)
      if out then
        checked[name] = out
      else
        table.move(p, 1, #p, #problems + 1, problems)
      end
    end
  end
  local _, err = sort(found, order, disabled)
  return problems, err
end

-- start(core, config) -> true | nil, err: load, order, init all, start all.
function M.start(c, config)
  core = c
  if not prepared then
    local problems = M.check(c, config)
    if #problems > 0 then return nil, table.concat(problems, "; ") end
  end
  local found, order, skipped = prepared[1], prepared[2], prepared[3]
  prepared = nil
  if not found then return nil, order end
  local disabled = {}
  for name in pairs(skipped) do
    disabled[name] = true
    log("info", "plugins", "%s: disabled by config", name)
  end
  for name, pc in pairs(config.plugins) do
    if skipped[name] then -- logged above
    elseif not found[name] then
      log("warn", "plugins", "plugins.%s: no such plugin on plugin_dirs (setting ignored)", name)
    elseif pc.enabled == false then
      disabled[name] = true
      log("info", "plugins", "%s: disabled by config", name)
    end
  end
  local sorted, err = sort(found, order, disabled)
  if not sorted then return nil, err end

  for _, name in ipairs(sorted) do
    local f = found[name]
    local rec = { name = name, path = f.path, mtime = f.mtime, P = f.P,
                  given = config.plugins[name], config = checked[name] or config.plugins[name] or {},
                  slot = core.plugin_new(name) }
    records[#records + 1] = rec
    by_name[name] = rec
    local ok, ierr = start_one(rec, rec.P)
    if not ok then
      core.plugin_set_state(rec.slot, "failed")
      return nil, ("plugin %s: %s"):format(name, ierr)
    end
  end
  for _, rec in ipairs(records) do
    local ok, serr = call(rec, rec.P, "start")
    if not ok then
      core.plugin_set_state(rec.slot, "failed")
      return nil, ("plugin %s: start failed: %s"):format(rec.name, serr)
    end
    core.plugin_set_state(rec.slot, "started")
  end
  log("info", "plugins", "%d plugin(s) started: %s", #records,
    table.concat((function() local n = {} for i, r in ipairs(records) do n[i] = r.name end return n end)(), ", "))
  return true
end

-- stop(): every plugin, in reverse start order.
function M.stop()
  for i = #records, 1, -1 do
    local rec = records[i]
    stop_one(rec)
    core.plugin_drop_inbox(rec.slot)
    core.plugin_set_state(rec.slot, "stopped")
  end
  records, by_name = {}, {}
end

-- Swap one plugin for the code now in its file. Returns ok, message.
local function reload_one(rec)
  local P, err = compile(rec.path)
  if not P then
    log("error", rec.name, "reload failed, the running version stays: %s", err)
    return nil, err
  end
  if P.name ~= rec.name then
    err = ("%s now names itself %q; a reload cannot rename a plugin"):format(rec.path, P.name)
    log("error", rec.name, "reload failed, the running version stays: %s", err)
    return nil, err
  end
  local config, problems = check_settings(rec.name, P, rec.given)
  if not config then
    err = table.concat(problems, "; ")
    log("error", rec.name, "reload failed, the running version stays: %s", err)
    return nil, err
  end
  -- Deliveries wait in the inbox while the two versions swap.
  core.plugin_hold(rec.slot, true)
  local old, old_config = rec.P, rec.config
  rec.config = config
  local saved
  if old.save then
    local ok, s = call(rec, old, "save")
    if ok then saved = s else log("error", rec.name, "save failed: %s", s) end
  end
  stop_one(rec)
  local ok, serr = start_one(rec, P, saved)
  if ok then
    ok, serr = call(rec, P, "start")
    if not ok then serr = "start failed: " .. tostring(serr) end
  end
  if not ok then
    log("error", rec.name, "new version failed (%s); restarting the old one", serr)
    stop_one(rec)
    rec.config = old_config
    local rok, rerr = start_one(rec, old, saved)
    if rok then rok, rerr = call(rec, old, "start") end
    if not rok then
      log("error", rec.name, "the old version failed to restart too: %s", rerr)
      core.plugin_set_state(rec.slot, "failed")
    else
      core.plugin_set_state(rec.slot, "started")
    end
    core.plugin_reroute(rec.slot)
    core.plugin_hold(rec.slot, false)
    return nil, serr
  end
  rec.P = P
  rec.mtime = core.mtime(rec.path)
  core.plugin_set_state(rec.slot, "started")
  core.plugin_reroute(rec.slot)
  core.plugin_hold(rec.slot, false)
  log("info", rec.name, "reloaded from %s", rec.path)
  return true
end

-- reload(name): that plugin; reload(nil): every plugin whose file changed.
function M.reload(name)
  if name then
    local rec = by_name[name]
    if not rec then
      log("warn", "plugins", "reload: no running plugin named %q", name)
      return nil, "no such plugin: " .. name
    end
    return reload_one(rec)
  end
  local n, failed = 0, 0
  for _, rec in ipairs(records) do
    if core.mtime(rec.path) ~= rec.mtime then
      n = n + 1
      if not reload_one(rec) then failed = failed + 1 end
    end
  end
  log("info", "plugins", "reload: %d changed plugin(s), %d failed", n, failed)
  return failed == 0, ("%d reloaded, %d failed"):format(n - failed, failed)
end

-- status(): for /health and the debug command.
function M.status()
  local out = {}
  for i, rec in ipairs(records) do
    local s = core.plugin_stats(rec.slot)
    s.name = rec.name
    if rec.P.status then
      local ok, custom = core.plugin_call(rec.slot, rec.P.status, rec.P)
      if ok and type(custom) == "table" then s.custom = custom end
    end
    out[i] = s
  end
  return out
end

-- status_json(): status() as JSON text for the health server (C side).
local cjson = require("cjson")
function M.status_json()
  local out = {}
  for _, s in ipairs(M.status()) do
    out[s.name] = s
    s.name = nil
  end
  local ok, text = pcall(cjson.encode, out)
  if ok then return text end
  -- A status() that returned something JSON cannot hold: report without it.
  for _, s in pairs(out) do
    if s.custom and not pcall(cjson.encode, s.custom) then s.custom = { error = "status() is not JSON-encodable" } end
  end
  return cjson.encode(out)
end

return M
