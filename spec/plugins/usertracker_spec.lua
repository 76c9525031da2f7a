-- UserTracker: sessions, last seen and messages land in their tables with the
-- right times; the bot's own reconnect keeps sessions of users still there;
-- `seen` answers from them.
local h = require("helpers")
local cytube = require("cytube")
local sql = require("sqlspec")
local PL = require("plugins")

local SESSIONS = "SELECT id, username, rank, extract(epoch FROM joined_at) AS joined, " ..
  "extract(epoch FROM left_at) AS left, end_reason, messages, afk_seconds, afk_since IS NOT NULL AS afk " ..
  "FROM daz_usertracker_sessions WHERE channel = 'testroom' ORDER BY id"

local function by_user(rows, name, open)
  for _, r in ipairs(rows) do
    if r.username == name and (open == nil or (r.left == nil) == open) then return r end
  end
end

describe("usertracker", function()
  local srv, p, dbname, url

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    dbname, url = sql.create_db()
    p = PL.start(srv, { url = url, core = { backoff_initial_ms = 200 } })
    p.wait_log("testroom: joined as dazbot", 15)
  end)

  teardown(function() PL.cleanup(p, srv, dbname) end)

  it("opens a session per join, counts messages, closes on leave, tracks AFK", function()
    local t0 = os.time()
    PL.add_user(srv, "testroom", "alice", 5)
    PL.add_user(srv, "testroom", "bob", 1)
    srv:chat("testroom", "alice", "hello <b>there</b>")
    srv:chat("testroom", "alice", "second _line_")
    srv:emit("testroom", "setAFK", { name = "bob", afk = true })
    local rows = PL.wait_rows(url, SESSIONS, function(r)
      local a, b = by_user(r, "alice", true), by_user(r, "bob", true)
      return a and a.messages == 2 and b and b.afk
    end, 10, "alice's two messages and bob AFK")
    local a = by_user(rows, "alice", true)
    assert.equals(5, a.rank)
    assert.is_true(math.abs(a.joined - t0) <= 5, "joined_at is off: " .. a.joined .. " vs " .. t0)
    assert.truthy(by_user(rows, "dazbot", true), "the bot's own session")

    h.sleep(1.1) -- a measurable AFK time (the wait below has a deadline)
    srv:emit("testroom", "setAFK", { name = "bob", afk = false })
    srv:emit("testroom", "userLeave", { name = "bob" })
    rows = PL.wait_rows(url, SESSIONS, function(r) return by_user(r, "bob", false) end, 10, "bob's session to end")
    local b = by_user(rows, "bob", false)
    assert.equals("left", b.end_reason)
    assert.is_true(b.afk_seconds >= 1 and b.afk_seconds < 10, "afk_seconds " .. b.afk_seconds)
    assert.is_true(b.left >= b.joined)

    local users = PL.rows(url, "SELECT username, messages, last_message, afk FROM daz_usertracker_users " ..
      "WHERE channel = 'testroom' AND name_key = 'alice'")
    assert.equals(2, users[1].messages)
    assert.equals("second _line_", users[1].last_message)
  end)

  it("keeps sessions of users still present across the bot's reconnect and closes the others", function()
    PL.add_user(srv, "testroom", "ghost", 0)
    local before = PL.wait_rows(url, SESSIONS, function(r) return by_user(r, "ghost", true) end)
    local bot_before = by_user(before, "dazbot", true)
    local alice_before = by_user(before, "alice", true)
    assert.truthy(bot_before)

    -- The test server knows only real sockets: after the reconnect its user
    -- list holds the bot, not alice or ghost (announced by hand above).
    srv:drop("testroom", "dazbot")
    p.wait_log("testroom: joined as dazbot", 15)
    h.wait_until(function() return #p.logs("testroom: joined as dazbot") >= 2 end, 15, "the second join")
    local after = PL.wait_rows(url, SESSIONS, function(r)
      return by_user(r, "ghost", false) and by_user(r, "alice", false)
    end, 10, "absent sessions to close")
    local bot_after = by_user(after, "dazbot", true)
    assert.truthy(bot_after, "the bot's session was closed by its own reconnect")
    assert.equals(bot_before.id, bot_after.id)
    local ghost = by_user(after, "ghost", false)
    assert.equals("absent", ghost.end_reason)
    assert.equals(alice_before.id, by_user(after, "alice", false).id)
    local opened = 0
    for _, r in ipairs(after) do if r.username == "dazbot" then opened = opened + 1 end end
    assert.equals(1, opened)
  end)

  it("answers seen", function()
    PL.add_user(srv, "testroom", "carol", 0)
    PL.add_user(srv, "testroom", "alice", 5)
    srv:chat("testroom", "alice", "still here", { raw = true })
    PL.wait_rows(url, SESSIONS, function(r)
      local a = by_user(r, "alice", true)
      return a and a.messages == 1
    end)
    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "carol", "!seen alice", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^seen: alice is here %(joined [%dms ]+ ago, last message [%dms ]+ ago%)$",
      10, since)
    PL.pm(srv, "testroom", "alice", "dazbot", "!seen bob")
    PL.wait_sent(srv, "testroom", "pm", "^seen: bob was last seen %d+[sm].* ago", 10, since)
    srv:chat("testroom", "dave", "!lastseen /nobody", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^seen: that is not a user name$", 10, since)
  end)

  it("counts a burst of chat exactly, in the sessions open when it was said", function()
    for _, n in ipairs({ "u1", "u2", "u3" }) do PL.add_user(srv, "testroom", n, 0) end
    for i = 1, 60 do srv:chat("testroom", "u" .. (i % 3 + 1), "line " .. i, { raw = true }) end
    srv:emit("testroom", "userLeave", { name = "u1" })   -- written before the leave is handled
    local rows = PL.wait_rows(url, "SELECT name_key, messages, last_message FROM daz_usertracker_users " ..
      "WHERE name_key IN ('u1', 'u2', 'u3') ORDER BY name_key", function(r)
        return #r == 3 and r[1].messages + r[2].messages + r[3].messages == 60
      end, 15, "60 messages")
    assert.same({ 20, 20, 20 }, { rows[1].messages, rows[2].messages, rows[3].messages })
    assert.equals("line 60", rows[1].last_message)
    local s = PL.rows(url, SESSIONS)
    local u1 = by_user(s, "u1", false)
    assert.truthy(u1, "u1's session did not end")
    assert.equals(20, u1.messages)
  end)

  it("logged no plugin warnings or errors", function()
    assert.same({}, PL.plugin_problems(p))
  end)
end)
