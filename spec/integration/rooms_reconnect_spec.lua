-- CyTube rooms, staying connected: server restarts, silent servers, kicks
-- (Duplicate login, bans), connection refusals, several rooms at once, and
-- malformed frames from the server.
local h = require("helpers")
local room_suite = require("room_suite")
local system = require("system")
local R = require("rooms")

local function joins(srv, channel) return #R.sent(srv, channel, "joinChannel") end

describe("rooms: reconnect", function()
  local room = room_suite.new()
  local srv = room.srv
  before_each(function()
    srv:config({ conn_burst = 0 }) -- a failed test must not leave limits behind
  end)

  it("rejoins after the server restarts, after a backoff with jitter", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } } })
    R.wait_state(p, "testroom", "joined")
    local t_down = system.gettime() -- the connection drops as the old server stops
    srv:restart()
    local st = R.wait_state(p, "testroom", "backoff")
    assert.matches("closed", st.detail)
    p.wait_log("reconnecting in")
    R.wait_state(p, "testroom", "joined", 20, 2)
    -- Every wait so far: attempt n waits 2 s * 2^(n-1) ± 25 % (a slow
    -- restart of the server may cost an attempt or two).
    for _, l in ipairs(p.logs("reconnecting in")) do
      local delay, n = l.msg:match("reconnecting in ([%d.]+) s %(attempt (%d+)%)")
      delay, n = tonumber(delay), tonumber(n)
      local base = 2 * 2 ^ (n - 1)
      assert.is_true(delay >= base * 0.75 - 0.05 and delay <= base * 1.25 + 0.05,
        ("attempt %d waited %.2f s, outside %g s ± 25 %%"):format(n, delay, base))
    end
    local join = R.sent(srv, "testroom", "joinChannel")[1]
    local after = join.t / 1000 - t_down
    assert.is_true(after >= 1.4, ("rejoined %.2f s after the restart: no backoff"):format(after))
    assert.equals(1, joins(srv, "testroom"))
  end)

  it("backs off further while the server stays down", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { backoff_initial_ms = 300 } })
    R.wait_state(p, "testroom", "joined")
    srv:stop()
    h.wait_until(function() return #p.logs("reconnecting in") >= 3 end, 15, "three reconnect attempts")
    local d = {}
    for i, l in ipairs(p.logs("reconnecting in")) do d[i] = tonumber(l.msg:match("reconnecting in ([%d.]+) s")) end
    assert.is_true(d[1] >= 0.2 and d[1] <= 0.4, "attempt 1 waited " .. d[1])
    assert.is_true(d[2] >= 0.45 and d[2] <= 0.75, "attempt 2 waited " .. d[2])
    assert.is_true(d[3] >= 0.9 and d[3] <= 1.5, "attempt 3 waited " .. d[3])
    p.wait_log("discovery failed")
    srv:restart()
    R.wait_state(p, "testroom", "joined", 15, 2)
  end)

  it("notices a silent server by the ping timeout and reconnects", function()
    srv:restart({ ping_interval = 300, ping_timeout = 300 })
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { backoff_initial_ms = 200 } })
    R.wait_state(p, "testroom", "joined")
    srv:silence("testroom", "dazbot")
    p.wait_log("the server went silent", 5)
    R.wait_state(p, "testroom", "joined", 10, 2)
    assert.equals(2, joins(srv, "testroom"))
    srv:restart({ ping_interval = 25000, ping_timeout = 120000 })
  end)

  it("backs off long after a Duplicate login kick and says why", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { backoff_initial_ms = 100, duplicate_login_backoff_ms = 3000 } })
    R.wait_state(p, "testroom", "joined")
    local t_kick = system.gettime()
    srv:kick("testroom", "dazbot", "Duplicate login")
    local st = R.wait_state(p, "testroom", "backoff")
    assert.matches("Duplicate login", st.detail)
    p.wait_log("kicked: Duplicate login")
    local snap = R.wait_result(p, "ev", function(e) return e.type == "cytube.event.kick" end)
    assert.equals(2, snap.priority)
    -- Not the 100 ms backoff: nothing before ~3 s, then a rejoin.
    assert.has_error(function()
      h.wait_until(function() return joins(srv, "testroom") > 1 end, 2, "an early rejoin")
    end)
    R.wait_state(p, "testroom", "joined", 10, 2)
    local rejoin = R.sent(srv, "testroom", "joinChannel")[2]
    assert.is_true(rejoin.t / 1000 - t_kick >= 2.9, "rejoined after " .. (rejoin.t / 1000 - t_kick) .. " s")
  end)

  it("stops a room it is banned from and keeps the others", function()
    local p = room.start_bot({ rooms = {
      { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" },
      { channel = "other", username = "dazbot", password = "dazbot-pass-1" },
    }, core = { backoff_initial_ms = 100 } })
    R.wait_state(p, "testroom", "joined")
    R.wait_state(p, "other", "joined")
    srv:kick("testroom", "dazbot", "You're banned!")
    local st = R.wait_state(p, "testroom", "stopped")
    assert.matches("You're banned!", st.detail, 1, true)
    assert.has_error(function()
      h.wait_until(function() return joins(srv, "testroom") > 1 end, 1, "a rejoin")
    end)
    srv:chat("other", "alice", "!say still here", { raw = true })
    h.wait_until(function()
      for _, e in ipairs(R.sent(srv, "other", "chatMsg")) do if e.data.msg == "still here" then return true end end
    end, 5, "chat in the other room")
  end)

  it("waits out a connection refusal (44 Rate limit exceeded)", function()
    -- One connection, then one every 2 s per address.
    srv:config({ conn_burst = 1, conn_rate = 0.5 })
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { backoff_initial_ms = 300 } })
    R.wait_state(p, "testroom", "joined")
    srv:drop("testroom", "dazbot")
    local st = R.wait_result(p, "status", function(v)
      return v.state == "backoff" and v.detail:find("Rate limit exceeded", 1, true)
    end, 10, "a refused connection")
    assert.matches("connection refused by the server", st.detail, 1, true)
    R.wait_state(p, "testroom", "joined", 15, 2)
  end)

  it("keeps three rooms independent when the server drops one", function()
    local rooms = {}
    for _, ch in ipairs({ "r1", "r2", "r3" }) do
      rooms[#rooms + 1] = { channel = ch, username = "dazbot", password = "dazbot-pass-1" }
    end
    local p = room.start_bot({ rooms = rooms, core = { backoff_initial_ms = 200 } })
    for _, ch in ipairs({ "r1", "r2", "r3" }) do R.wait_state(p, ch, "joined") end
    local ids = {}
    for _, ch in ipairs({ "r1", "r3" }) do ids[ch] = srv:users(ch)[1].id end
    srv:drop("r2", "dazbot")
    R.wait_state(p, "r2", "joined", 10, 2)
    for _, ch in ipairs({ "r1", "r3" }) do
      assert.equals(ids[ch], srv:users(ch)[1].id) -- same socket: never disturbed
      assert.equals(1, joins(srv, ch))
    end
    assert.equals(2, joins(srv, "r2"))
    for _, ch in ipairs({ "r1", "r2", "r3" }) do srv:chat(ch, "alice", "!say hi " .. ch, { raw = true }) end
    h.wait_until(function()
      for _, ch in ipairs({ "r1", "r2", "r3" }) do
        local ok = false
        for _, e in ipairs(R.sent(srv, ch, "chatMsg")) do ok = ok or e.data.msg == "hi " .. ch end
        if not ok then return false end
      end
      return true
    end, 10, "a line in every room")
  end)

  it("leaves every room with 41 when it stops", function()
    local p = room.start_bot({ rooms = {
      { channel = "r1", username = "dazbot", password = "dazbot-pass-1" },
      { channel = "r2" }, -- anonymous: read only
    } })
    R.wait_state(p, "r1", "joined")
    R.wait_state(p, "r2", "joined")
    assert.equals(0, p.stop_clean())
    local reasons = {}
    h.wait_until(function()
      for _, d in ipairs(srv:disconnects()) do reasons[d.channel] = d.reason end
      return reasons.r1 and reasons.r2
    end, 5, "both sockets to end")
    assert.equals("client namespace disconnect", reasons.r1)
    assert.equals("client namespace disconnect", reasons.r2)
  end)

  it("survives malformed and oversized frames", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { backoff_initial_ms = 200 } })
    R.wait_state(p, "testroom", "joined")
    srv:raw("testroom", "dazbot", {
      "", "9", "4", "42", "42[", "42[]", "42[1]", "42{}", "42[\"x\"", "42[\"chatMsg\",{\"username\":5}]",
      "42[\"chatMsg\",null]", "42[\"userlist\",{}]", "42[\"userlist\",[1,null,{\"name\":7}]]", "42[\"rank\",\"high\"]",
      "42[\"setPermissions\",[]]", "42[\"channelOpts\",{\"chat_antiflood\":true,\"chat_antiflood_params\":{\"burst\":\"x\",\"sustained\":0}}]",
      "42[\"changeMedia\",7]", "42[\"mediaUpdate\",{\"currentTime\":1}]", "42[\"kick\",[]]", "42[\"needPassword\",{}]",
      "42[\"" .. ("n"):rep(200) .. "\",1]", "42[\"bad name!\",1]", "42/other,[\"chatMsg\",{}]", "43[]", "4313",
      "45-[\"x\"]", "0{}", "0{\"sid\":1}", "3", "6", "5", "42" .. ("["):rep(5000) .. ("]"):rep(5000),
      "42[\"userLeave\",{\"name\":null}]", "42[\"setUserRank\",{\"name\":\"nobody\",\"rank\":\"x\"}]",
    })
    srv:raw("testroom", "dazbot", { "42[\"chatMsg\",{}]", "\255\254" }, { binary = true })
    -- Still alive and talking on the same connection.
    srv:chat("testroom", "alice", "!say survived", { raw = true })
    h.wait_until(function()
      for _, e in ipairs(R.sent(srv, "testroom", "chatMsg")) do if e.data.msg == "survived" then return true end end
    end, 10, "the bot to answer after the junk")
    assert.equals(1, joins(srv, "testroom"))
    local st = R.state(p, srv, "testroom")
    assert.is_true(st.counters.bad_frames >= 10, "bad frames counted: " .. st.counters.bad_frames)
    -- A frame over 1 MiB: the bot drops that connection and comes back.
    srv:raw("testroom", "dazbot", {}, { size = (1 << 20) + 10 })
    p.wait_log("exceeds 1048576 bytes", 10)
    R.wait_state(p, "testroom", "joined", 10, 2)
    assert.is_true(p.running())
  end)
end)
