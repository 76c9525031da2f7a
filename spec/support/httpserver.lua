-- Spec helper for the loopback HTTP test server (spec/support/http-server/).
--
--   local web = require("httpserver").start()
--   web.url ("http://127.0.0.1:<port>"), web.https_url (self-signed), web.port
--   web:posts("name") -> the posts its webhook receiver /hook/name recorded
--   web:hook_status("name", 500)  -- what the receiver answers from now on
--   web:stop()
local h = require("helpers")
local cjson = require("cjson")

local M = {}
M.dir = h.root .. "/spec/support/http-server"

local Server = {}
Server.__index = Server

function Server:get(path)
  local status, body = h.http("GET", self.url .. path)
  return status, body
end

function Server:posts(name)
  local status, body = h.http("GET", self.url .. "/control/posts/" .. name)
  assert(status == 200, "posts: " .. tostring(status) .. " " .. tostring(body))
  return cjson.decode(body)
end

function Server:hook_status(name, status)
  local code = h.http("POST", ("%s/control/hook/%s?status=%d"):format(self.url, name, status))
  assert(code == 200, "hook_status: " .. tostring(code))
end

function Server:stop()
  if self.proc then self.proc.stop(5) end
  self.proc = nil
end

-- opts.https (default true): also serve https with a fresh self-signed certificate.
function M.start(opts)
  opts = opts or {}
  local dir = h.tmpdir()
  local argv = { "node", M.dir .. "/server.js" }
  if opts.https ~= false then
    local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    local ok, _, out = h.sh(("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout %s -out %s")
      :format(h.shquote(key), h.shquote(cert)))
    assert(ok, "openssl: " .. out)
    for _, a in ipairs({ "--cert", cert, "--key", key }) do argv[#argv + 1] = a end
  end
  local proc = h.spawn(argv, { dir = dir })
  local ready = h.wait_until(function()
    local line = proc.output():match("(%b{})")
    if line then return cjson.decode(line) end
    if not proc.running() then error("the HTTP test server exited:\n" .. proc.output()) end
  end, 15, "the HTTP test server to listen")
  local s = setmetatable({ proc = proc, port = math.tointeger(ready.port), https_port = math.tointeger(ready.https_port) }, Server)
  s.url = "http://127.0.0.1:" .. s.port
  s.https_url = s.https_port and ("https://127.0.0.1:" .. s.https_port) or nil
  return s
end

return M
