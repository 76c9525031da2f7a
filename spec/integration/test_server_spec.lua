-- The test CyTube server itself: discovery, a real socket.io-client session
-- (smoke-client.js) as a registered user and as a guest, what the control API
-- recorded, and refusals.
local helpers = require("helpers")
local cytube = require("cytube")
local cjson = require("cjson")

local SMOKE = cytube.dir .. "/smoke-client.js"

-- What the smoke client sends (plus " <nonce>"), and what CyTube 3.86 makes
-- of it: & < > escaped, ' " ( ) literal (protocol doc §7.1).
local SENT_PREFIX = [[smoke <b>bold</b> & "quoted" 'single' (paren) ]]
local ECHO_PREFIX = [[smoke &lt;b&gt;bold&lt;/b&gt; &amp; "quoted" 'single' (paren) ]]

-- Run the smoke client; returns exit code and its JSON lines keyed by event.
local function smoke(srv, channel, name, password)
  local cmd = { "node", helpers.shquote(SMOKE), helpers.shquote(srv.url), helpers.shquote(channel),
    helpers.shquote(name) }
  if password then cmd[#cmd + 1] = helpers.shquote(password) end
  cmd[#cmd + 1] = "--timeout 8000"
  -- The client bounds itself; `timeout` is the backstop if it ever hangs.
  local _, rc, out = helpers.sh("timeout 20 " .. table.concat(cmd, " "))
  local events, order = {}, {}
  for line in out:gmatch("[^\n]+") do
    local ok, obj = pcall(cjson.decode, line)
    if ok and type(obj) == "table" and obj.event then
      order[#order + 1] = obj.event
      if events[obj.event] == nil then events[obj.event] = obj end
    end
  end
  return rc, events, out, order
end

local function starts_with(s, prefix)
  return type(s) == "string" and s:sub(1, #prefix) == prefix
end

describe("test CyTube server", function()
  local srv

  setup(function()
    srv = cytube.start({ ping_interval = 2000, ping_timeout = 4000, usercount_throttle = 0 })
  end)

  teardown(function()
    if srv then srv:stop() end
    helpers.cleanup_tmp()
  end)

  it("prints its port and answers discovery like CyTube", function()
    assert.is_true(srv.port > 0)
    local code, body = srv:http("GET", "/socketconfig/testroom.json")
    assert.are.equal(200, code)
    local cfg = cjson.decode(body)
    assert.are.equal(1, #cfg.servers)
    assert.are.equal(srv.url, cfg.servers[1].url)
    assert.are.equal(false, cfg.servers[1].secure)

    -- A channel nobody has joined is fine too; an invalid name is a 404.
    code = srv:http("GET", "/socketconfig/never-used_yet.json")
    assert.are.equal(200, code)
    code, body = srv:http("GET", "/socketconfig/bad%20name!.json")
    assert.are.equal(404, code)
    assert.are.equal('Channel "bad name!" does not exist.', cjson.decode(body).error)
    code = srv:http("GET", "/socketconfig/" .. ("x"):rep(31) .. ".json")
    assert.are.equal(404, code)
  end)

  it("serves a registered user end to end and records what the client sent", function()
    local rc, ev, out = smoke(srv, "testroom", "dazbot", "dazbot-pass-1")
    assert.are.equal(0, rc, out)
    assert.is_true(ev.login.data.success)
    assert.are.equal("dazbot", ev.login.data.name)
    assert.is_nil(ev.login.data.guest) -- registered logins carry no guest key
    assert.are.equal(0, ev.userlist.size) -- nobody else was logged in
    assert.is_true(starts_with(ev.sent.msg, SENT_PREFIX))
    local nonce = ev.sent.msg:sub(#SENT_PREFIX + 1)
    assert.are.equal(ECHO_PREFIX .. nonce, ev.echo.data.msg)
    assert.are.equal("dazbot", ev.echo.data.username)

    -- The server logged the client's joinChannel, login and chatMsg, in order.
    local client = ev.connect.id
    local _, seen = srv:wait_received("testroom", function(e)
      return e.client == client and e.event == "chatMsg"
    end, 5)
    local mine = {}
    for _, e in ipairs(seen) do
      if e.client == client then mine[#mine + 1] = e end
    end
    assert.are.same({ "joinChannel", "login", "chatMsg" }, { mine[1].event, mine[2].event, mine[3].event })
    assert.are.equal("testroom", mine[1].data.name)
    assert.are.equal(cytube.null, mine[1].user)
    assert.are.equal("dazbot", mine[2].data.name)
    assert.are.equal("dazbot", mine[3].user)
    assert.are.equal(ev.sent.msg, mine[3].data.msg)
    assert.is_true(mine[1].seq < mine[2].seq and mine[2].seq < mine[3].seq)

    -- The escaped line is in the channel's history, for replay on join.
    local state = srv:channel_state("testroom")
    assert.are.equal(ECHO_PREFIX .. nonce, state.buffer[#state.buffer].msg)
  end)

  it("serves a guest", function()
    local rc, ev, out = smoke(srv, "guestroom", "smoke_guest")
    assert.are.equal(0, rc, out)
    assert.are.same({ success = true, name = "smoke_guest", guest = true }, ev.login.data)
    local nonce = ev.sent.msg:sub(#SENT_PREFIX + 1)
    assert.are.equal(ECHO_PREFIX .. nonce, ev.echo.data.msg)
    local login = srv:wait_received("guestroom", function(e)
      return e.client == ev.connect.id and e.event == "login"
    end, 5)
    assert.are.equal("smoke_guest", login.data.name)
    assert.is_nil(login.data.pw) -- no password: a guest login
  end)

  it("refuses a wrong password and a guest using a registered name", function()
    local rc, ev, out = smoke(srv, "testroom", "dazbot", "not-the-password")
    assert.are.equal(3, rc, out)
    assert.are.same({ success = false, error = "Invalid username/password combination" }, ev.login.data)
    assert.is_nil(ev.echo)

    rc, ev, out = smoke(srv, "testroom", "Dazb0t") -- look-alike of a registered name
    assert.are.equal(3, rc, out)
    assert.are.same({ success = false, error = "That username is registered." }, ev.login.data)
  end)

  it("lists users and injects chat through the control API", function()
    local msg = srv:chat("ctlroom", "virtual_user", [[<i>hi</i> & 'you']])
    assert.are.equal("&lt;i&gt;hi&lt;/i&gt; &amp; 'you'", msg.msg)
    assert.are.equal("virtual_user", msg.username)
    local state = srv:channel_state("ctlroom")
    assert.are.equal(msg.msg, state.buffer[1].msg)
    assert.are.same({}, srv:users("ctlroom"))
    assert.are.equal(0, srv:emit("ctlroom", "chatMsg", { username = "x", msg = "y", meta = {}, time = 0 }).sent)
  end)

  it("rejects bad control requests without falling over", function()
    local code, body = srv:http("POST", "/control/emit", "{not json")
    assert.are.equal(400, code)
    assert.truthy(cjson.decode(body).error:match("bad JSON"))
    code = srv:http("POST", "/control/emit", "[1,2]")
    assert.are.equal(400, code)
    code = srv:http("POST", "/control/kick", "{}")
    assert.are.equal(400, code)
    code = srv:http("GET", "/control/no-such-route")
    assert.are.equal(404, code)
    code = srv:http("GET", "/nothing/here")
    assert.are.equal(404, code)
    code, body = srv:http("GET", "/control/health")
    assert.are.equal(200, code)
    assert.is_true(cjson.decode(body).ok)
  end)

  it("forgets everything on reset", function()
    srv:chat("resetroom", "someone", "before reset")
    assert.is_true(#srv:received() > 0)
    srv:reset()
    assert.are.equal(0, #srv:received())
    local code = srv:http("GET", "/control/channel?channel=resetroom")
    assert.are.equal(404, code)
  end)
end)
