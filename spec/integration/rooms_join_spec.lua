-- CyTube rooms, joining: the real bin/daz against the test CyTube server.
-- Registered and guest logins, wrong passwords, channel passwords, the
-- events plugins get (types, tags, priorities, replay marks, the userlist
-- expansion), the room state rooms.get gives, and verbs checked against
-- the bot's rank.
local h = require("helpers")
local room_suite = require("room_suite")
local R = require("rooms")

describe("rooms: join and login", function()
  local room = room_suite.new()
  local srv = room.srv

  it("joins, waits, logs in a registered account, and marks replayed, own and userlist events", function()
    -- History the server replays on join.
    srv:chat("testroom", "alice", "old one", { raw = true })
    srv:chat("testroom", "dazbot", "old own line", { raw = true })

    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { login_delay_ms = 1000 } })
    R.wait_state(p, "testroom", "joined")

    -- Wire order: joinChannel, then login no sooner than login_delay_ms.
    local got = srv:received("testroom")
    assert.equals("joinChannel", got[1].event)
    assert.same({ name = "testroom" }, got[1].data)
    assert.equals("login", got[2].event)
    assert.same({ name = "dazbot", pw = "dazbot-pass-1" }, got[2].data)
    -- (measured by the server: its own delays under load shave a little off)
    assert.is_true(got[2].t - got[1].t >= 800, "login came " .. (got[2].t - got[1].t) .. " ms after joinChannel")

    -- Live chat after the join, and the bot's own reply.
    srv:chat("testroom", "alice", "!say hello <world>", { raw = true })
    R.wait_result(p, "say")
    local echo = R.wait_result(p, "ev", function(e)
      return e.type == "cytube.event.chatMsg" and e.data.username == "dazbot" and not e.replayed
    end)
    assert.is_true(R.has_tag(echo, "own"))
    assert.equals("hello &lt;world&gt;", echo.data.msg)

    local chats = R.events(p, "cytube.event.chatMsg")
    assert.equals("old one", chats[1].data.msg)
    assert.is_true(chats[1].replayed and R.has_tag(chats[1], "replayed"))
    assert.is_true(R.has_tag(chats[1], "room:testroom"))
    assert.equals("testroom", chats[1].room)
    assert.equals(1, chats[1].priority) -- chat is high priority
    assert.is_true(R.has_tag(chats[2], "replayed") and R.has_tag(chats[2], "own"))
    local live = chats[3]
    assert.equals("!say hello <world>", live.data.msg)
    assert.is_false(live.replayed)
    assert.is_false(R.has_tag(live, "own"))

    -- login is urgent; the userlist comes expanded, per-user events marked.
    local login = R.events(p, "cytube.event.login")[1]
    assert.equals(2, login.priority)
    assert.is_true(login.data.success)
    local starts = R.events(p, "cytube.event.userlist.start")
    local ends = R.events(p, "cytube.event.userlist.end")
    assert.is_true(#starts >= 2 and #ends >= 2) -- on join (empty) and again after the rank change
    assert.is_true(R.has_tag(starts[1], "replayed"))
    assert.is_false(R.has_tag(starts[2], "replayed"))
    local from_list = {}
    for _, e in ipairs(R.events(p, "cytube.event.addUser")) do
      if e.data.from_userlist then from_list[#from_list + 1] = e.data.name end
    end
    assert.same({ "dazbot" }, from_list)

    -- rooms.get: own rank (3 in testroom), permissions, options, users.
    local st = R.state(p, srv, "testroom")
    assert.equals("joined", st.state)
    assert.equals("dazbot", st.name)
    assert.equals(3, st.rank)
    assert.equals(0, st.permissions.chat)
    assert.equals(2, st.permissions.leaderctl)
    assert.is_false(st.options.chat_antiflood)
    assert.equals(3, st.users.dazbot.rank)
    assert.equals(0, st.counters.cooldowns)
  end)

  it("joins on the channel rank, not on the account's global rank that comes first", function()
    -- CyTube (join-chat.txt): rank 1 (the account's), the login reply, then
    -- rank 3 (dazbot's in testroom, from the database). A plugin that acts the
    -- moment the room is joined must find rank 3, and so must the checks.
    local eager = [[
local cjson = require("cjson")
local P = { name = "eager" }
function P:init(bus) self.bus = bus end
function P:start()
  local bus = self.bus
  bus:subscribe("cytube.room.status", function(ev)
    if ev.data.state ~= "joined" then return end
    local rank = rooms.get(ev.data.channel).rank
    local v, err = bus:request("cytube.assignLeader", { room = ev.data.channel, name = "" }, { timeout = 2000 })
    daz.log.info("RESULT eager %s", cjson.encode({ rank = rank, ok = v ~= nil, err = err }))
  end)
end
return P
]]
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      plugins = { eager = eager }, probe = { quiet = true } })
    local line = p.wait_log("testroom: joined as ")
    assert.equals("testroom: joined as dazbot (rank 3)", line.msg)
    local r = R.wait_result(p, "eager")
    assert.equals(3, r.rank)
    assert.is_true(r.ok, r.err) -- leaderctl needs 2: refused on rank 1
    h.wait_until(function() return #R.sent(srv, "testroom", "assignLeader") == 1 end, 5, "assignLeader on the server")
  end)

  it("logs in as a guest when no password is set", function()
    local p = room.start_bot({ rooms = { { channel = "guestroom", username = "guestbot_1" } } })
    R.wait_state(p, "guestroom", "joined")
    local login = R.events(p, "cytube.event.login")[1]
    assert.is_true(login.data.guest)
    assert.same({ name = "guestbot_1" }, R.sent(srv, "guestroom", "login")[1].data)
    local st = R.state(p, srv, "guestroom")
    assert.equals("guestbot_1", st.name)
    assert.equals(0, st.rank)
  end)

  it("reports a wrong password, stops the room, and does not retry", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "wrong" } },
      core = { backoff_initial_ms = 100 } })
    local st = R.wait_state(p, "testroom", "stopped")
    assert.matches("login as dazbot failed: Invalid username/password combination", st.detail, 1, true)
    p.wait_log("stopped: login as dazbot failed")
    -- A retry loop would show within a second at a 100 ms backoff.
    assert.has_error(function()
      h.wait_until(function() return #R.sent(srv, "testroom", "login") > 1 end, 1.5, "a second login")
    end)
    assert.equals(1, #R.sent(srv, "testroom", "joinChannel"))
  end)

  it("joins a channel with a password, and stops on a wrong one", function()
    srv:channel_opts("locked", { password = "sesame" })
    srv:channel_opts("locked2", { password = "sesame" })
    local p = room.start_bot({ rooms = {
      { channel = "locked", username = "bob", password = "bob-pass-1", channel_password = "sesame" },
      { channel = "locked2", username = "moddy", password = "moddy-pass-1", channel_password = "nope" },
    } })
    R.wait_state(p, "locked", "joined")
    local st = R.wait_state(p, "locked2", "stopped")
    assert.matches("channel password was refused", st.detail, 1, true)
    assert.same({ name = "locked", pw = "sesame" }, R.sent(srv, "locked", "joinChannel")[1].data)
  end)

  it("checks verbs against the bot's rank and answers requests", function()
    srv:channel_opts("plain", {})
    local p = room.start_bot({ rooms = {
      { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" }, -- rank 3 here
      { channel = "plain", username = "bob", password = "bob-pass-1" },        -- rank 1
    } })
    R.wait_state(p, "testroom", "joined")
    R.wait_state(p, "plain", "joined")
    -- The rank-3 session needs its channel rank before it may act.
    h.wait_until(function() return R.state(p, srv, "testroom").rank == 3 end, 10, "rank 3")

    local function req(channel, type_, data)
      local before = #R.results(p, "req")
      srv:chat(channel, "alice", "!req " .. require("cjson").encode({ type = type_, data = data }), { raw = true })
      return h.wait_until(function()
        local all = R.results(p, "req")
        if #all > before then return all[#all] end
      end, 10, "the answer to " .. type_)
    end

    -- Rank 1 may not assign a leader (the server would kick it): refused, nothing sent.
    local r = req("plain", "cytube.assignLeader", { name = "alice" })
    assert.is_false(r.ok)
    assert.matches("needs rank 2 for 'leaderctl'", r.err, 1, true)
    assert.equals(0, #R.sent(srv, "plain", "assignLeader"))
    r = req("plain", "cytube.command", { command = "kick", args = "alice because" })
    assert.is_false(r.ok)
    assert.matches("'kick'", r.err, 1, true)
    r = req("plain", "cytube.send", { room = "nowhere", msg = "x" })
    assert.is_false(r.ok)
    assert.matches("unknown room nowhere", r.err, 1, true)

    -- Rank 3 may.
    r = req("testroom", "cytube.assignLeader", { name = "" })
    assert.is_true(r.ok, r.err)
    r = req("testroom", "cytube.queue", { id = "abc", type = "yt", pos = "next" })
    assert.is_true(r.ok, r.err)
    r = req("testroom", "cytube.newPoll", { title = "lunch?", opts = { "yes", "no" }, obscured = false })
    assert.is_true(r.ok, r.err)
    r = req("testroom", "cytube.command", { command = "kick", args = "nobody_here go" })
    assert.is_true(r.ok, r.err)
    h.wait_until(function() return #R.sent(srv, "testroom", "newPoll") == 1 end, 5, "newPoll on the server")
    assert.same({ name = "" }, R.sent(srv, "testroom", "assignLeader")[1].data)
    assert.same({ id = "abc", type = "yt", pos = "next" }, R.sent(srv, "testroom", "queue")[1].data)
    assert.same({ title = "lunch?", opts = { "yes", "no" }, obscured = false }, R.sent(srv, "testroom", "newPoll")[1].data)
    h.wait_until(function()
      for _, e in ipairs(R.sent(srv, "testroom", "chatMsg")) do
        if e.data.msg == "/kick nobody_here go" then return true end
      end
    end, 5, "the /kick line")
  end)
end)
