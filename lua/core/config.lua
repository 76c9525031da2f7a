-- config: evaluates config.lua in a sandbox, applies DAZ_* environment and
-- command-line overrides, validates every key against the schema below and
-- fills in defaults. Embedded in bin/daz at build time; called by src/config.c.
--
-- Every problem is reported as one line "<path>: <what is wrong>", and all of
-- them are reported at once, so an operator fixes a file in one pass.

local M = {}

------------------------------------------------------------------------------
-- The schema language (lua/core/schema.lua, which plugins use too).

local S = require("core.schema")
local str, int, num, bool, enum = S.str, S.int, S.num, S.bool, S.enum
local record, array, map, free = S.record, S.array, S.map, S.free
local range, nonempty = S.range, S.nonempty
local validate, join_path, describe = S.validate, S.join_path, S.describe

local function url_check(v)
  if not v:match("^https?://[^/%s]+") then
    return ("must be an http:// or https:// URL, got %q"):format(v)
  end
end

-- CyTube's own rule for channel names (src/utilities.js isValidChannelName).
local function channel_check(v)
  if not v:match("^[%w_-]+$") or #v > 30 then
    return ("must be 1-30 letters, digits, '_' or '-', got %q"):format(v)
  end
end

local function http_allow_check(v)
  local addr, prefix = v:match("^([%x:.]+)/(%d+)$")
  if addr and (addr:find(":") or addr:match("^%d+%.%d+%.%d+%.%d+$")) then return end
  if v:match("^%d+%.%d+%.%d+%.%d+$") or v:match("^[%x:]*:[%x:]*$") and not v:match("^[^:]+:%d+$") then return end
  local port = v:match("^%[[%x:.]+%]:(%d+)$") or v:match("^[^:/%[%]%s]+:(%d+)$")
  if port and tonumber(port) >= 1 and tonumber(port) <= 65535 then return end
  return ("must be a CIDR (10.0.0.0/8, fd00::/8), an address, or host:port, got %q"):format(v)
end

local function http_resolve_check(v)
  if not v:match("^[^:%s]+:%d+:.+$") then
    return ("must be host:port:address (as curl's --resolve), got %q"):format(v)
  end
end

local room = record({
  channel = str { required = true, check = channel_check },
  username = str { check = nonempty },        -- absent: join without logging in
  password = str { secret = true },           -- absent: a guest login
  channel_password = str { secret = true },   -- for channels that ask (needPassword)
  server = str { check = url_check },         -- overrides core.server for this room
  enabled = bool { default = true },
  reconnect_attempts = int { default = 10, check = range(1, 1000) },
  cooldown_minutes = num { default = 2, check = range(0, 1440) },
})

-- Logger rules (the SQL plugin's batch writer). `fields` maps a column to
-- where its value comes from in the event: "room", "type", "tags",
-- "priority", "data" (the whole payload), "data.a.b" (a path in it), or
-- "=text" (that literal text). Times in epoch milliseconds (CyTube's `time`)
-- become timestamptz by the column's type.
local function ident_check(v)
  if not v:match("^[a-z_][a-z0-9_]*$") or #v > 63 then
    return ("must be a lower-case table name (a-z, 0-9, _), got %q"):format(v)
  end
end

local function field_spec_ok(spec)
  if spec:sub(1, 1) == "=" then return true end
  if spec == "room" or spec == "type" or spec == "tags" or spec == "priority" or spec == "data" then return true end
  local path = spec:match("^data%.(.+)$")
  return path ~= nil and not path:find("%.%.") and not path:find("%.$")
end

local logger_rule = record({
  event_pattern = str { check = nonempty },
  enabled = bool {},
  table = str { check = ident_check },
  fields = map(str {}),
  tags = array(str { check = nonempty }),
})

M.DEFAULT_LOGGERS = {
  chat = { event_pattern = "cytube.event.chatMsg", enabled = true, table = "daz_chat_log",
    fields = { channel = "room", username = "data.username", message = "data.msg",
               message_time = "data.time", meta = "data.meta" } },
  private_messages = { event_pattern = "cytube.event.pm", enabled = true, table = "daz_private_messages",
    fields = { channel = "room", from_user = "data.username", to_user = "data.to", message = "data.msg",
               message_time = "data.time", meta = "data.meta" } },
  user_joins = { event_pattern = "cytube.event.addUser", enabled = true, table = "daz_user_activity",
    fields = { channel = "room", username = "data.name", event_type = "=join", rank = "data.rank",
               meta = "data.meta" } },
  user_leaves = { event_pattern = "cytube.event.userLeave", enabled = true, table = "daz_user_activity",
    -- The same columns as joins, so that joins and leaves share one buffer and keep their order.
    fields = { channel = "room", username = "data.name", event_type = "=leave", rank = "data.rank",
               meta = "data.meta" } },
  core_events = { event_pattern = "*", enabled = false, table = "daz_core_events",
    fields = { event_type = "type", channel = "room", payload = "data", tags = "tags" } },
}

-- loggers.<name> overrides the default rule of that name key by key (so
-- `loggers = { chat = { enabled = false } }` turns chat logging off); a new
-- name needs event_pattern, table and fields. Fills the defaults in place.
local function merge_loggers(v)
  local problems = {}
  for name, d in pairs(M.DEFAULT_LOGGERS) do
    local u = v[name] or {}
    for k, x in pairs(d) do
      if u[k] == nil then u[k] = x end
    end
    v[name] = u
  end
  local names = {}
  for name in pairs(v) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local r = v[name]
    if r.enabled == nil then r.enabled = true end
    for _, k in ipairs({ "event_pattern", "table", "fields" }) do
      if r[k] == nil then problems[#problems + 1] = ("%s.%s: is required"):format(name, k) end
    end
    if r.fields then
      local cols = {}
      for col in pairs(r.fields) do cols[#cols + 1] = col end
      table.sort(cols)
      for _, col in ipairs(cols) do
        if ident_check(col) then
          problems[#problems + 1] = ("%s.fields: column %q must be a lower-case name"):format(name, col)
        elseif not field_spec_ok(r.fields[col]) then
          problems[#problems + 1] = ("%s.fields.%s: %q is not room, type, tags, priority, data, data.<path> or =<text>")
            :format(name, col, r.fields[col])
        end
      end
      if #cols == 0 then problems[#problems + 1] = name .. ".fields: maps no column" end
    end
  end
  if #problems > 0 then return table.concat(problems, "; ") end
end

M.schema = record({
  core = record({
    server = str { default = "https://cytu.be", check = url_check },
    rooms = array(room, { default = {} }),
    -- CyTube connection timing (src/cytube.c). The defaults follow the
    -- server's rules; specs shorten some of them, operators rarely need to.
    login_delay_ms = int { default = 2000, check = range(0, 60000) },            -- joinChannel -> login
    connect_timeout_ms = int { default = 30000, check = range(100, 600000) },    -- discovery..session, login reply
    backoff_initial_ms = int { default = 2000, check = range(100, 3600000) },    -- first reconnect wait
    backoff_max_ms = int { default = 300000, check = range(100, 86400000) },     -- reconnect wait cap
    duplicate_login_backoff_ms = int { default = 900000, check = range(1000, 86400000) },
    guest_retry_ms = int { default = 65000, check = range(1000, 3600000) },      -- after "one guest login per 60 s"
    server_connect_burst = int { default = 5, check = range(1, 1000) },          -- connection attempts per server ...
    server_connect_interval_ms = int { default = 10000, check = range(0, 3600000) }, -- ... then one per interval
    outbound_queue_size = int { default = 1000, check = range(1, 1000000) },     -- chat lines waiting per room
    chat_max_length = int { default = 320, check = range(16, 1000) },            -- UTF-16 units per chat line
    verify_tls = bool { default = true },                                        -- wss:// certificate checks
    tls_ca_file = str { check = nonempty },  -- CA bundle; default /etc/ssl/certs/ca-certificates.crt
    database = record({
      url = str { secret_url = true },       -- a libpq URI or "key=value" string
      host = str {},
      port = int { check = range(1, 65535) },
      database = str {},
      user = str {},
      password = str { secret = true },
      sslmode = enum { "disable", "allow", "prefer", "require", "verify-ca", "verify-full" },
      pool_size = int { default = 4, check = range(1, 64) },
      connect_timeout_s = int { default = 10, check = range(1, 600) },
      -- The SQL plugin (src/sql.c): migrations, the batch log writer, queues.
      migrations_dir = str { default = "sql", check = nonempty },  -- sql/NNN_name.sql, applied at start
      flush_ms = int { default = 200, check = range(1, 600000) },   -- log rows are written this often ...
      batch_size = int { default = 1000, check = range(1, 1000000) }, -- ... or when a table has this many
      max_buffered_rows = int { default = 100000, check = range(1, 100000000) }, -- in memory; beyond: the spool
      query_timeout_ms = int { default = 30000, check = range(100, 3600000) }, -- waiting for a connection
      max_queued = int { default = 10000, check = range(1, 10000000) },  -- queries waiting at most
      shutdown_timeout_ms = int { default = 5000, check = range(0, 600000) }, -- to write buffered rows at exit
    }, { default = {} }),
  }, { default = {} }),
  event_bus = record({
    buffer_sizes = map(int { check = range(1, 10000000) }, { default = {} }),
    default_buffer_size = int { default = 1000, check = range(1, 10000000) },
    dispatch_per_turn = int { default = 1000, check = range(1, 1000000) },
  }, { default = {} }),
  health = record({
    enabled = bool { default = true },
    port = int { default = 8080, check = range(0, 65535) },
    bind = str { default = "127.0.0.1", check = nonempty },
    -- /health/live fails when the event loop has not turned for this long.
    live_timeout_ms = int { default = 5000, check = range(100, 600000) },
    -- How often the loop rebuilds the documents the server hands out.
    refresh_ms = int { default = 1000, check = range(50, 60000) },
  }, { default = {} }),
  -- The Lua `http` API (src/http/): limits, and the SSRF guard's exceptions.
  http = record({
    timeout_ms = int { default = 10000, check = range(100, 600000) },         -- per request, unless it says
    max_bytes = int { default = 1048576, check = range(1, 1 << 30) },         -- body cap: "too large" past it
    max_redirects = int { default = 5, check = range(0, 50) },
    max_in_flight = int { default = 64, check = range(1, 100000) },           -- overall ...
    max_in_flight_per_plugin = int { default = 16, check = range(1, 100000) }, -- ... and per plugin; the rest wait
    max_queued = int { default = 1000, check = range(0, 1000000) },           -- waiting at most; then "busy"
    -- Private, loopback and link-local destinations allowed anyway: "10.0.0.0/8", "host:port".
    allow_private = array(str { check = http_allow_check }, { default = {} }),
    -- "host:port:address" pins, as curl's --resolve (tests, split-horizon DNS).
    resolve = array(str { check = http_resolve_check }, { default = {} }),
    user_agent = str { check = nonempty },                                    -- default daz/<version>
  }, { default = {} }),
  log = record({
    level = enum({ "debug", "info", "warn", "error" }, { default = "info" }),
    format = enum({ "auto", "text", "json" }, { default = "auto" }),
  }, { default = {} }),
  plugin_dirs = array(str { check = nonempty }, { default = { "lua/plugins" } }),
  plugin_host = record({
    -- Lua VM instructions one handler call may run before it is aborted.
    instruction_budget = int { default = 10000000, check = range(1000, 1000000000) },
    -- ... counted from when a handler has run this long (shorter runs are
    -- not counted at all, which keeps every handler at full speed).
    budget_after_ms = int { default = 1, check = range(1, 60000) },
    -- Errors within a minute after which a plugin is reported degraded.
    degraded_after_errors = int { default = 10, check = range(1, 1000000) },
    inbox_size = int { default = 10000, check = range(1, 10000000) },
  }, { default = {} }),
  plugins = map(free(), { default = {} }),
  spool = record({
    dir = str { default = "var/spool", check = nonempty },
    max_bytes = int { default = 256 * 1024 * 1024, check = range(1024, 1 << 40) },
  }, { default = {} }),
  -- Logger rules: events matching event_pattern become rows of `table`
  -- (see logger_rule and DEFAULT_LOGGERS below).
  loggers = map(logger_rule, { default = {}, check = merge_loggers }),
})

------------------------------------------------------------------------------
-- Overrides: DAZ_HEALTH__PORT=9000 sets health.port; "__" separates levels,
-- so keys with single underscores keep them (DAZ_EVENT_BUS__DEFAULT_BUFFER_SIZE).
-- A numeric level indexes a list (DAZ_CORE__ROOMS__1__PASSWORD).

-- The schema node at a path (nil for paths inside free tables: any scalar goes).
local function schema_at(segments)
  local s = M.schema
  for _, seg in ipairs(segments) do
    if s == nil or s.kind == "free" then return nil, true end
    if s.kind == "record" then s = s.fields[seg]
    elseif s.kind == "array" then
      if math.type(seg) ~= "integer" then return nil, false end
      s = s.of
    elseif s.kind == "map" then s = s.of
    else return nil, false end
    if s == nil then return nil, false end
  end
  return s, true
end

local function convert(s, text)
  local kind = s and s.kind
  if kind == "integer" then
    local n = math.tointeger(tonumber(text))
    if n == nil then return nil, ("expected an integer, got %q"):format(text) end
    return n
  elseif kind == "number" then
    local n = tonumber(text)
    if n == nil then return nil, ("expected a number, got %q"):format(text) end
    return n
  elseif kind == "boolean" then
    local b = ({ ["true"] = true, ["1"] = true, yes = true, on = true,
                 ["false"] = false, ["0"] = false, no = false, off = false })[text:lower()]
    if b == nil then return nil, ("expected true or false, got %q"):format(text) end
    return b
  elseif kind == "string" or kind == "enum" then
    return text
  elseif kind == nil then
    -- Inside a plugin's free table: guess the obvious type.
    if text == "true" then return true elseif text == "false" then return false end
    return math.tointeger(tonumber(text)) or tonumber(text) or text
  end
  return nil, "cannot be set from text (it is a table)"
end

local function apply_override(cfg, o, problems)
  local segments, shown = {}, {}
  for part in (o.path .. "."):gmatch("([^.]*)%.") do
    local seg = math.tointeger(tonumber(part)) or part
    segments[#segments + 1] = seg
    shown[#shown + 1] = tostring(seg)
  end
  local where = o.source .. " (" .. table.concat(shown, ".") .. ")"
  for _, seg in ipairs(segments) do
    if seg == "" then
      problems[#problems + 1] = where .. ": malformed setting name"
      return
    end
  end
  local s, known = schema_at(segments)
  if not s and not known then
    problems[#problems + 1] = where .. ": no such setting"
    return
  end
  local value, why = convert(s, o.value)
  if why then
    problems[#problems + 1] = where .. ": " .. why
    return
  end
  -- Checked here too, so a bad value is reported under its flag or variable
  -- (and only there: a value not applied leaves the file's own in place).
  if s and s.kind ~= "record" and s.kind ~= "array" and s.kind ~= "map" then
    local before = #problems
    validate(s, value, where, problems)
    if #problems > before then return end
  end
  local t = cfg
  for i = 1, #segments - 1 do
    local seg = segments[i]
    if t[seg] == nil then t[seg] = {} end
    if type(t[seg]) ~= "table" then
      problems[#problems + 1] = where .. ": cannot set inside a " .. describe(t[seg])
      return
    end
    t = t[seg]
  end
  t[segments[#segments]] = value
end

------------------------------------------------------------------------------
-- Secrets: everything marked secret, plus URL passwords and any plugin key
-- whose name says it is one. The C side hands them to the logger's mask.

local secret_key = { password = true, token = true, secret = true, api_key = true, apikey = true }

local function collect_secrets(s, v, out)
  if v == nil then return end
  if s and s.secret and type(v) == "string" then out[#out + 1] = v end
  if s and s.secret_url and type(v) == "string" then
    local pw = v:match("^%a[%w+.-]*://[^:/@]*:([^@/]+)@") or v:match("password%s*=%s*'?([^%s']+)")
    if pw then out[#out + 1] = pw end
  end
  if type(v) ~= "table" then return end
  for k, x in pairs(v) do
    local child
    if s and s.kind == "record" then child = s.fields[k]
    elseif s and (s.kind == "array" or s.kind == "map") then child = s.of end
    if (not child or child.kind == "free") and type(k) == "string" and type(x) == "string" then
      local lk = k:lower()
      for word in pairs(secret_key) do
        if lk:find(word, 1, true) then out[#out + 1] = x break end
      end
    end
    collect_secrets(child, x, out)
  end
end

------------------------------------------------------------------------------
-- Sandboxed evaluation of config.lua.

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function sandbox()
  return {
    os = { getenv = os.getenv, time = os.time, date = os.date, clock = os.clock },
    string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, assert = assert,
    pcall = pcall, rawget = rawget, rawset = rawset, rawequal = rawequal,
    rawlen = rawlen, setmetatable = setmetatable,
    require = function() error("require is not available in config.lua", 2) end,
  }
end

-- One line, without the traceback an operator does not need.
local function first_line(msg)
  return (tostring(msg):match("^[^\n]*"))
end

local function evaluate(path)
  local f = io.open(path, "rb")
  if not f then
    local _, err = io.open(path, "rb")
    return nil, ("%s: cannot read: %s"):format(path, (err or "?"):gsub("^[^:]*: ", ""))
  end
  local text = f:read("a")
  f:close()
  local chunk, err = load(text, "@" .. path, "t", sandbox())
  if not chunk then return nil, first_line(err) end
  -- A config file that loops forever must not hang the start.
  debug.sethook(function() error("config.lua ran too long (an endless loop?)", 2) end, "", 100000000)
  local ok, result = pcall(chunk)
  debug.sethook()
  if not ok then return nil, path .. ": error while running: " .. first_line(result) end
  if type(result) ~= "table" then
    return nil, ("%s: must return a table, got %s"):format(path, describe(result))
  end
  return result
end

-- A room is named by its channel (events say room = "<channel>"), so a
-- channel can be listed once, whichever server each entry names.
local function duplicate_rooms(rooms, problems)
  local first = {}
  for i, r in ipairs(rooms) do
    if type(r) == "table" and type(r.channel) == "string" then
      local j = first[r.channel]
      if j then
        problems[#problems + 1] = ("core.rooms[%d]: channel %q is listed twice (also core.rooms[%d])"):format(i, r.channel, j)
      else
        first[r.channel] = i
      end
    end
  end
end

-- load(path, overrides) -> config, secrets | nil, { problem lines }
-- overrides: list of { path = "health.port", value = "9000", source = "DAZ_HEALTH__PORT" },
-- applied in order (environment first, then flags).
function M.load(path, overrides)
  local cfg, err = evaluate(path)
  if not cfg then return nil, { err } end
  local problems = {}
  for _, o in ipairs(overrides or {}) do apply_override(cfg, o, problems) end
  local valid = validate(M.schema, cfg, "", problems)
  if valid and valid.core and valid.core.rooms then duplicate_rooms(valid.core.rooms, problems) end
  if #problems > 0 then return nil, problems end
  local secrets = {}
  collect_secrets(M.schema, valid, secrets)
  return valid, secrets
end

-- A one-line rendering of a config table for the debug log. Secrets are
-- left in on purpose: the logger masks them, and a spec proves it does.
function M.describe(v)
  if type(v) ~= "table" then
    return type(v) == "string" and ("%q"):format(v) or tostring(v)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. M.describe(k) .. "]")
    parts[#parts + 1] = key .. "=" .. M.describe(v[k])
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- The environment variable name for a setting path, for messages and docs.
function M.env_name(path)
  return "DAZ_" .. path:gsub("%.", "__"):upper()
end

return M
