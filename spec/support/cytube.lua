-- Spec helper for the test CyTube server (spec/support/cytube-server/).
--
--   local cytube = require("cytube")
--   local srv = cytube.start({ ping_interval = 2000, ping_timeout = 4000 })
--   ... srv.port, srv.url, srv:emit(...), srv:received(...), ...
--   srv:stop()
--
-- start() options: any server flag in snake_case (ping_interval,
-- ping_timeout, accounts, usercount_throttle, guest_login_delay, login_delay,
-- conn_burst, conn_rate, ip_connection_limit, in_rate_limit, in_burst,
-- max_chat_length, log_limit, verbose, port) plus start_timeout (seconds to
-- wait for the ready line, default 15). Control calls raise on HTTP errors.
local helpers = require("helpers")
local cjson = require("cjson").new()
-- Newer lua-cjson can tag decoded arrays so [] re-encodes as []; 2.1.0 cannot.
if cjson.decode_array_with_array_mt then cjson.decode_array_with_array_mt(true) end

local M = {}

M.dir = helpers.root .. "/spec/support/cytube-server"
M.null = cjson.null
M.json = cjson

local Server = {}
Server.__index = Server

local function flag_of(key)
  return "--" .. key:gsub("_", "-")
end

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-_%.~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- One HTTP request with curl; returns status code and body text.
function Server:http(method, path, body_text)
  local cmd = { "curl -sS -k -m 10 -o - -w '\\n%{http_code}' -X", helpers.shquote(method) }
  if body_text then
    cmd[#cmd + 1] = "-H 'Content-Type: application/json' --data-binary " .. helpers.shquote(body_text)
  end
  cmd[#cmd + 1] = helpers.shquote(self.url .. path)
  local ok, _, out = helpers.sh(table.concat(cmd, " "))
  if not ok then error(("curl %s %s failed: %s"):format(method, path, out), 2) end
  local text, code = out:match("^(.*)\n(%d%d%d)%s*$")
  if not code then error(("curl %s %s: unexpected output %q"):format(method, path, out), 2) end
  return tonumber(code), text
end

-- JSON request against the control API; raises unless the answer is 2xx.
function Server:control(method, path, body)
  local code, text = self:http(method, path, body and cjson.encode(body) or nil)
  local ok, decoded = pcall(cjson.decode, text)
  if code < 200 or code > 299 then
    error(("%s %s -> %d %s"):format(method, path, code, text), 2)
  end
  if not ok then error(("%s %s: bad JSON answer %q"):format(method, path, text), 2) end
  return decoded
end

local function query(params)
  local parts = {}
  for _, kv in ipairs(params) do
    if kv[2] ~= nil then parts[#parts + 1] = kv[1] .. "=" .. url_encode(kv[2]) end
  end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

-- Emit `event` with `data` to a channel's room, or only to user `to`.
function Server:emit(channel, event, data, to)
  return self:control("POST", "/control/emit", { channel = channel, event = event, data = data, to = to })
end

-- Events clients sent, oldest first: { seq, t, client, user, channel, event, data }.
-- user/channel are cytube.null when unknown. channel nil = all channels.
function Server:received(channel, since)
  return self:control("GET", "/control/received" .. query({ { "channel", channel }, { "since", since } }))
end

function Server:users(channel)
  return self:control("GET", "/control/users" .. query({ { "channel", channel } }))
end

function Server:channel_state(channel)
  return self:control("GET", "/control/channel" .. query({ { "channel", channel } }))
end

function Server:kick(channel, name, reason, by)
  return self:control("POST", "/control/kick", { channel = channel, name = name, reason = reason, by = by })
end

-- drop(channel, name) cuts one user's connection; drop() cuts all of them.
function Server:drop(channel, name)
  if channel == nil then return self:control("POST", "/control/drop", { all = true }) end
  return self:control("POST", "/control/drop", { channel = channel, name = name })
end

-- chat(channel, username, msg [, extra]) where extra may hold rank, meta,
-- modflair, raw. Returns the chatMsg object that was broadcast.
function Server:chat(channel, username, msg, extra)
  local body = { channel = channel, username = username, msg = msg }
  for k, v in pairs(extra or {}) do body[k] = v end
  return self:control("POST", "/control/chat", body).message
end

function Server:reset()
  return self:control("POST", "/control/reset", {})
end

function Server:channel_opts(channel, opts)
  local body = { channel = channel }
  for k, v in pairs(opts or {}) do body[k] = v end
  return self:control("POST", "/control/channel-opts", body).opts
end

function Server:permissions(channel, perms)
  local body = { channel = channel }
  for k, v in pairs(perms or {}) do body[k] = v end
  return self:control("POST", "/control/permissions", body).permissions
end

function Server:set_rank(channel, name, rank)
  return self:control("POST", "/control/rank", { channel = channel, name = name, rank = rank })
end

-- Run-time settings, e.g. srv:config({ usercount_throttle = 0 }).
function Server:config(settings)
  return self:control("POST", "/control/config", settings).config
end

-- Poll the received log until predicate(entry) is true for an entry newer
-- than `since` (default: everything). Returns that entry and the full list
-- polled so far; raises after `timeout` seconds (default 10).
function Server:wait_received(channel, predicate, timeout, since)
  local seen = {}
  local cursor = since
  local found = helpers.wait_until(function()
    local batch = self:received(channel, cursor)
    for _, e in ipairs(batch) do
      seen[#seen + 1] = e
      cursor = e.seq
      if predicate(e) then return e end
    end
  end, timeout or 10, ("a received event on %s matching the predicate"):format(tostring(channel)))
  return found, seen
end

-- How sockets ended: { {client, user, channel, reason, t} }.
function Server:disconnects()
  return self:control("GET", "/control/disconnects")
end

-- The server stops pinging one user's socket (a silent server, for ping
-- timeout tests).
function Server:silence(channel, name)
  return self:control("POST", "/control/silence", { channel = channel, name = name })
end

-- Raw WebSocket frames to one user's socket, outside Socket.IO: frames is a
-- list of strings; opts.binary sends them as binary frames; opts.size adds
-- one text frame of that many bytes.
function Server:raw(channel, name, frames, opts)
  opts = opts or {}
  return self:control("POST", "/control/raw",
    { channel = channel, name = name, frames = frames, binary = opts.binary, size = opts.size })
end

-- Stop the whole server and start a new one on the same port with the same
-- flags (a server restart: every connection is lost, all state forgotten).
function Server:restart(start_opts)
  self:stop()
  local opts = {}
  for k, v in pairs(self.opts or {}) do opts[k] = v end
  for k, v in pairs(start_opts or {}) do opts[k] = v end
  opts.port = self.port
  return self:start(opts)
end

-- Start the server of a handle from M.new, in place (restart uses it too).
function Server:start(opts)
  local fresh = M.start(opts or self.opts)
  for k, v in pairs(fresh) do self[k] = v end
  return self
end

-- Everything the server process printed (stdout and stderr).
function Server:output()
  return self.proc.output()
end

function Server:stop()
  if self.stopped then return self.exit_code end
  self.stopped = true
  self.exit_code = self.proc.stop(5)
  return self.exit_code
end

-- A handle that starts later with srv:start(opts): a describe block can give
-- it to its tests before busted's setup starts the server.
function M.new()
  return setmetatable({ stopped = true }, Server)
end

function M.start(opts)
  opts = opts or {}
  local check = helpers.sh("test -f " .. helpers.shquote(M.dir .. "/node_modules/socket.io/package.json")
    .. " && test -f " .. helpers.shquote(M.dir .. "/node_modules/socket.io-client/package.json"))
  if not check then
    error(("test CyTube server: node_modules is missing in %s; run `npm ci` in that folder first"):format(M.dir), 2)
  end

  local argv = { "node", M.dir .. "/server.js" }
  local port = opts.port or 0
  argv[#argv + 1] = "--port"
  argv[#argv + 1] = tostring(port)
  local keys = {}
  for k in pairs(opts) do
    if k ~= "port" and k ~= "start_timeout" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = opts[k]
    -- The server runs in its own folder: make a relative fixture path
    -- relative to the project root instead.
    if k == "accounts" and type(v) == "string" and v:sub(1, 1) ~= "/" then v = helpers.root .. "/" .. v end
    if v == true then
      argv[#argv + 1] = flag_of(k)
    elseif v ~= false then
      argv[#argv + 1] = flag_of(k)
      argv[#argv + 1] = tostring(v)
    end
  end

  local proc = helpers.spawn(argv, { cwd = M.dir })
  local ok, port_or_err = pcall(helpers.wait_until, function()
    local p = proc.output():match('{"ready":true,"port":(%d+)}')
    if p then return tonumber(p) end
    if not proc.running() then
      error("test CyTube server exited before it was ready:\n" .. proc.output(), 0)
    end
  end, opts.start_timeout or 15, "the test CyTube server's ready line")
  if not ok then
    proc.stop(2)
    local msg = tostring(port_or_err)
    if not msg:find("exited before it was ready", 1, true) then msg = msg .. "\n" .. proc.output() end
    error(msg, 2)
  end

  local srv = setmetatable({
    proc = proc,
    pid = proc.pid,
    port = port_or_err,
    url = (opts.tls_cert and "https" or "http") .. "://127.0.0.1:" .. port_or_err,
    stopped = false,
    opts = opts,
  }, Server)
  return srv
end

return M
