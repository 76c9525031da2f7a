-- EventFilter and the bot's commands: the real bin/daz with lua/plugins in
-- the test CyTube server's testroom (dazbot has rank 3 there), a private
-- database, and a test plugin "cmdprobe" that registers commands.
local h = require("helpers")
local cytube = require("cytube")
local sql = require("sqlspec")
local PL = require("plugins")

local CMDPROBE = PL.PRELUDE .. [[
local commands = require("commands")
local P = { name = "cmdprobe", depends = { "eventfilter" } }
function P:init(bus) self.bus = bus end
function P:start()
  local bus = self.bus
  commands.register(bus, { plugin = "cmdprobe", name = "echo", aliases = { "say" }, cooldown = 30,
    usage = "echo <words>", description = "says the words back" }, function(c)
    result("echo", c)
    return "echo: " .. table.concat(c.args, "|")
  end, daz.log)
  commands.register(bus, { plugin = "cmdprobe", name = "modonly", min_rank = 2, cooldown = 0,
    description = "for moderators" }, function(c) result("modonly", c) return "mod ok" end, daz.log)
  commands.register(bus, { plugin = "cmdprobe", name = "ping0", cooldown = 0 }, function(c)
    result("ping0", c)
    return "pong " .. c.args[1]
  end, daz.log)
  commands.register(bus, { plugin = "cmdprobe", name = "slowfail", cooldown = 0 }, function(c)
    return nil, "it broke"
  end, daz.log)
  bus:after(300, function()
    local ok, err = bus:request("eventfilter.register", { plugin = "cmdprobe", name = "uptime" })
    result("dup", { ok = ok ~= nil, err = err })
    local reg = bus:request("eventfilter.register", { plugin = "cmdprobe", name = "tempcmd" })
    local _, wrong_owner = bus:request("eventfilter.unregister", { plugin = "other", name = "tempcmd" })
    local unreg = bus:request("eventfilter.unregister", { plugin = "cmdprobe", name = "tempcmd" })
    local list = bus:request("eventfilter.list", { rank = 1 })
    local names = {}
    for _, c in ipairs(list.commands) do names[c.name] = true end
    local one = bus:request("eventfilter.list", { name = "SAY" })
    local _, bad = bus:request("eventfilter.register", { plugin = "cmdprobe", name = "bad name!" })
    result("api", { reg = reg ~= nil, wrong_owner = wrong_owner, unreg = unreg ~= nil, names = names,
                    prefix = list.prefix, one = one.commands[1], bad = bad })
  end)
end
return P
]]

describe("eventfilter and commands", function()
  local srv, p, dbname, url

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    dbname, url = sql.create_db()
    -- History the server replays on join: must not run.
    srv:chat("testroom", "alice", "!uptime", { raw = true })
    p = PL.start(srv, { url = url, plugins = { cmdprobe = CMDPROBE },
      config = { eventfilter = { admins = { "sysop" }, spam_repeat = 3, spam_flood = 50 } } })
    p.wait_log("testroom: joined as dazbot", 15)
    p.wait_result("dup", 10)
    for _, u in ipairs({ { "alice", 5 }, { "bob", 1 }, { "carol", 0 }, { "sysop", 255 }, { "dave", 0 },
                         { "erin", 0 } }) do
      PL.add_user(srv, "testroom", u[1], u[2])
    end
    -- Sync point: the bot has seen the users once a command that needs rank 2 runs for alice.
    srv:chat("testroom", "alice", "!modonly", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^mod ok$")
  end)

  teardown(function() PL.cleanup(p, srv, dbname) end)

  it("ignores replayed history: the !uptime from before the join got no answer", function()
    srv:chat("testroom", "carol", "!about", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg",
      "^Daz %d+%.%d+%.%d+ %(build [%w%-]+%), up [%dms ]+, memory [%d.]+ MB %(Lua [%d.]+ MB%), %d+ plugins, 1/1 rooms joined$")
    for _, m in ipairs(PL.sent(srv, "testroom", "chatMsg")) do
      assert.is_nil(m.msg:find("^up "), "a replayed !uptime was answered: " .. m.msg)
    end
  end)

  it("answers !help in the channel and a PM !help by PM", function()
    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "bob", "!help", { raw = true })
    local e = PL.wait_sent(srv, "testroom", "chatMsg", "^commands: ", 10, since)
    assert.truthy(e.data.msg:find("!uptime", 1, true))
    assert.truthy(e.data.msg:find("!echo", 1, true))
    assert.is_nil(e.data.msg:find("!modonly", 1, true), "bob (rank 1) is shown a rank-2 command")
    assert.is_nil(e.data.msg:find("!debug", 1, true), "a non-admin is shown an admin command")

    since = PL.cursor(srv, "testroom")
    PL.pm(srv, "testroom", "alice", "dazbot", "!help echo")
    local pm = PL.wait_sent(srv, "testroom", "pm", "^usage: echo", 10, since)
    assert.equals("alice", pm.data.to)
    assert.truthy(pm.data.msg:find("also: say", 1, true))
    for _, m in ipairs(PL.sent(srv, "testroom", "chatMsg")) do
      assert.is_nil(m.msg:find("^usage: echo"), "the PM answer went to the channel")
    end
  end)

  it("checks ranks and admins, with a short reason", function()
    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "bob", "!modonly", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^!modonly: needs rank 2 %(you have 1%)$", 10, since)

    srv:chat("testroom", "alice", "!debug", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^!debug: only for bot admins$", 10, since)

    PL.pm(srv, "testroom", "sysop", "dazbot", "!debug")
    local pm = PL.wait_sent(srv, "testroom", "pm", "^bus: ", 10, since)
    assert.equals("sysop", pm.data.to)
    assert.truthy(pm.data.msg:find("rooms: testroom joined", 1, true))
  end)

  it("keeps a per-user cooldown and reads HTML-mangled arguments as typed", function()
    local since = PL.cursor(srv, "testroom")
    -- CyTube's default filters turn _bar_ into <em>bar</em>; quotes group.
    local sent = srv:chat("testroom", "dave", '!say foo_bar_baz "two words" x&y')
    assert.truthy(sent.msg:find("<em>bar</em>", 1, true), "the server did not mangle: " .. sent.msg)
    PL.wait_sent(srv, "testroom", "chatMsg", "^echo: foo_bar_baz|two words|x&y$", 10, since)
    local seen = p.wait_result("echo")
    assert.same({ "foo_bar_baz", "two words", "x&y" }, seen.args)
    assert.equals("dave", seen.user)
    assert.equals("say", seen.alias)
    assert.equals(0, seen.rank)
    assert.is_false(seen.pm)

    srv:chat("testroom", "dave", "!echo again", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^!echo: wait %d+s$", 10, since)
    -- Another user is not held back by dave's cooldown.
    srv:chat("testroom", "erin", "!echo mine", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^echo: mine$", 10, since)
  end)

  it("ignores a user who repeats a command", function()
    local since = PL.cursor(srv, "testroom")
    for i = 1, 3 do srv:chat("testroom", "carol", "!ping0 same", { raw = true }) end
    srv:chat("testroom", "carol", "!ping0 other", { raw = true })
    srv:chat("testroom", "bob", "!ping0 bob", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^pong bob$", 10, since)
    local pongs = 0
    for _, e in ipairs(srv:received("testroom", since)) do
      if e.event == "chatMsg" and e.data.msg == "pong same" then pongs = pongs + 1 end
      assert.is_true(e.data.msg ~= "pong other", "carol was not ignored")
    end
    assert.equals(2, pongs)
  end)

  it("refuses a duplicate registration with a clear error", function()
    local dup = p.wait_result("dup")
    assert.is_false(dup.ok)
    assert.truthy(dup.err:find('"uptime" is already registered by plugin commands', 1, true), dup.err)
  end)

  it("answers eventfilter.list and eventfilter.unregister on the bus", function()
    local api = p.wait_result("api")
    assert.is_true(api.reg)
    assert.equals("no such command of that plugin", api.wrong_owner)
    assert.is_true(api.unreg)
    assert.is_nil(api.names.tempcmd, "unregistered, still listed")
    assert.is_true(api.names.echo and api.names.help and api.names.uptime)
    assert.is_nil(api.names.modonly, "rank 2 command listed for rank 1")
    assert.is_nil(api.names.debug, "admin command listed for a non-admin")
    assert.equals("!", api.prefix)
    assert.equals("echo", api.one.name)
    assert.equals("cmdprobe", api.one.plugin)
    assert.equals(30, api.one.cooldown)
    assert.truthy(api.bad:find("name must be 1-32 letters", 1, true), api.bad)
    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "gina", "!tempcmd", { raw = true })
    srv:chat("testroom", "gina", "!uptime", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^up ", 10, since)
    for _, e in ipairs(srv:received("testroom", since)) do
      assert.is_nil(tostring(e.data and e.data.msg):find("tempcmd", 1, true), "an unregistered command answered")
    end
  end)

  it("records every execution with its result and duration, and persists the registry", function()
    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "erin", "!slowfail", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^slowfail: it broke$", 10, since)
    local rows = PL.wait_rows(url, "SELECT username, command, args, pm, result, error, duration_ms, rank " ..
      "FROM daz_eventfilter_history WHERE channel = 'testroom' ORDER BY id", function(r)
        for _, x in ipairs(r) do if x.command == "slowfail" then return true end end
      end)
    local by = {}
    for _, r in ipairs(rows) do by[r.username .. " " .. r.command .. " " .. r.result] = r end
    local echo = by["dave echo ok"]
    assert.truthy(echo, "no ok row for dave's echo")
    assert.same({ "foo_bar_baz", "two words", "x&y" }, echo.args)
    assert.is_true(echo.duration_ms >= 0 and echo.duration_ms < 10000)
    assert.truthy(by["dave echo cooldown"])
    assert.truthy(by["bob modonly denied"])
    assert.equals(1, by["bob modonly denied"].rank)
    assert.truthy(by["alice debug denied"])
    local d = by["sysop debug ok"]
    assert.truthy(d)
    assert.is_true(d.pm)
    assert.equals("it broke", by["erin slowfail error"].error)
    assert.is_nil(by["alice uptime ok"], "the replayed !uptime was run")

    local cmds = PL.rows(url, "SELECT name, plugin, aliases, min_rank, admin_only, cooldown_s, active " ..
      "FROM daz_eventfilter_commands ORDER BY name")
    local names = {}
    for _, c in ipairs(cmds) do names[c.name] = c end
    assert.equals("commands", names.help.plugin)
    assert.same({ "say" }, names.echo.aliases)
    assert.equals(30, names.echo.cooldown_s)
    assert.is_true(names.debug.admin_only)
    assert.equals(2, names.modonly.min_rank)
  end)

  it("answers PMs with the rank from the user list, and lets admins skip cooldowns", function()
    local since = PL.cursor(srv, "testroom")
    PL.pm(srv, "testroom", "bob", "dazbot", "!modonly")
    local pm = PL.wait_sent(srv, "testroom", "pm", "^!modonly: needs rank 2 %(you have 1%)$", 10, since)
    assert.equals("bob", pm.data.to)
    srv:chat("testroom", "sysop", "!echo one", { raw = true })
    srv:chat("testroom", "sysop", "!echo two", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^echo: two$", 10, since)
    PL.wait_sent(srv, "testroom", "chatMsg", "^echo: one$", 10, since)
  end)

  it("reloads plugins for an admin; commands survive the reload of either side", function()
    local since = PL.cursor(srv, "testroom")
    PL.pm(srv, "testroom", "sysop", "dazbot", "!reload nosuchplugin")
    PL.wait_sent(srv, "testroom", "pm", "^reload: no plugin by that name$", 10, since)
    PL.pm(srv, "testroom", "sysop", "dazbot", "!reload commands")
    PL.wait_sent(srv, "testroom", "pm", "^reloading plugin commands$", 10, since)
    p.wait_log("^reloaded from .*commands%.lua$")
    PL.pm(srv, "testroom", "sysop", "dazbot", "!reload eventfilter")
    p.wait_log("^reloaded from .*eventfilter%.lua$")
    srv:chat("testroom", "frank", "!uptime", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^up %d+[sm][%dms ]*$", 10, since)
    srv:chat("testroom", "frank", "!help", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^commands: .*!echo", 10, since)
  end)

  it("logged no plugin warnings or errors", function()
    assert.same({}, PL.plugin_problems(p, "^registration refused: \"uptime\" is already registered"))
  end)
end)

local LOOPER = PL.PRELUDE .. [[
local commands = require("commands")
local P = { name = "looper", depends = { "eventfilter" } }
function P:init(bus) self.bus = bus end
function P:start()
  commands.register(self.bus, { plugin = "looper", name = "loop", cooldown = 0 }, function(c)
    result("loop", c.user)
    return "!loop again"
  end, daz.log)
  commands.register(self.bus, { plugin = "looper", name = "ping0", cooldown = 0 }, function(c)
    return "pong " .. (c.args[1] or "")
  end, daz.log)
  self.bus:after(300, function() result("ready", true) end)
end
return P
]]

describe("eventfilter limits", function()
  local srv, p, dbname, url

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    dbname, url = sql.create_db()
    p = PL.start(srv, { url = url, plugins = { looper = LOOPER }, config = { eventfilter = {
      admins = { "sysop" }, ignore_users = { "OtherBot" }, user_limit = 2, user_window = 30,
      room_limit = 8, room_window = 30, spam_flood = 6, spam_window = 15 } } })
    p.wait_log("testroom: joined as dazbot", 15)
    p.wait_result("ready", 10)
  end)

  teardown(function() PL.cleanup(p, srv, dbname) end)

  it("ignores its own lines and other bots, keeps user and room limits, ignores a flooder", function()
    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "alice", "!loop", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^!loop again$", 10, since)
    srv:chat("testroom", "otherbot", "!ping0 x", { raw = true })
    srv:chat("testroom", "bob", "!ping0 sync", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^pong sync$", 10, since)
    local loops = 0
    for _, l in ipairs(p.logs("^RESULT loop ")) do loops = loops + 1 end
    assert.equals(1, loops, "the bot ran its own reply")
    for _, m in ipairs(PL.sent(srv, "testroom", "chatMsg")) do assert.is_true(m.msg ~= "pong x") end

    -- Room: loop and sync so far (2 of 8). Users: at most 2 per 30 s.
    for _, line in ipairs({ { "erin", "a" }, { "erin", "b" }, { "erin", "c" }, { "frank", "d" }, { "frank", "e" },
                            { "gina", "f" }, { "gina", "g" }, { "harry", "h" }, { "sysop", "i" } }) do
      srv:chat("testroom", line[1], "!ping0 " .. line[2], { raw = true })
    end
    PL.wait_sent(srv, "testroom", "chatMsg", "^pong i$", 10, since)
    PL.wait_sent(srv, "testroom", "chatMsg", "^slow down, try again in %d+s$", 10, since)
    PL.wait_sent(srv, "testroom", "chatMsg", "^busy, try again in %d+s$", 10, since)
    local pongs = {}
    for _, m in ipairs(PL.sent(srv, "testroom", "chatMsg")) do
      local w = m.msg:match("^pong (%a)$")
      if w then pongs[#pongs + 1] = w end
    end
    table.sort(pongs)
    assert.same({ "a", "b", "d", "e", "f", "g", "i" }, pongs)

    -- dave floods: more than 6 attempts within 15 s get him ignored (no reply, no record).
    for i = 1, 8 do srv:chat("testroom", "dave", "!ping0 d" .. i, { raw = true }) end
    srv:chat("testroom", "sysop", "!ping0 z", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^pong z$", 10, since)
    local rows = PL.wait_rows(url, "SELECT username, result FROM daz_eventfilter_history ORDER BY id", function(r)
      return r[#r] and r[#r].username == "sysop"
    end)
    local dave = 0
    for _, r in ipairs(rows) do
      if r.username == "dave" then
        dave = dave + 1
        assert.equals("ratelimited", r.result)
      end
    end
    assert.equals(6, dave)
    p.wait_log("dave in testroom floods commands")
  end)

  it("logged no plugin warnings or errors", function()
    assert.same({}, PL.plugin_problems(p))
  end)
end)
