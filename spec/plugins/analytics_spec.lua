-- Analytics: the hourly, daily and per-user counts match the events sent,
-- also after a restart mid-hour (CyTube replays recent chat on the rejoin);
-- `stats` and `top` answer from them.
local h = require("helpers")
local cytube = require("cytube")
local sql = require("sqlspec")
local PL = require("plugins")

local SUMS = "SELECT coalesce(sum(messages), 0) AS messages, coalesce(sum(joins), 0) AS joins, " ..
  "coalesce(sum(media_plays), 0) AS plays, coalesce(max(peak_users), 0) AS peak, count(*) AS hours " ..
  "FROM daz_analytics_hourly WHERE channel = 'testroom'"
local DAILY = "SELECT sum(messages) AS messages, sum(joins) AS joins, sum(media_plays) AS plays, " ..
  "max(unique_chatters) AS chatters FROM daz_analytics_daily WHERE channel = 'testroom'"
local USERS = "SELECT username, sum(messages) AS messages FROM daz_analytics_user_daily " ..
  "WHERE channel = 'testroom' GROUP BY username ORDER BY username"

describe("analytics", function()
  local srv, p, dbname, url
  local opts

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    dbname, url = sql.create_db()
    opts = { url = url, config = { analytics = { interval = 0.3, sample_interval = 0.5 } } }
    p = PL.start(srv, opts)
    p.wait_log("testroom: joined as dazbot", 15)
  end)

  teardown(function() PL.cleanup(p, srv, dbname) end)

  it("counts messages, chatters, joins, plays and users once, also after a restart", function()
    PL.add_user(srv, "testroom", "alice", 5)
    PL.add_user(srv, "testroom", "bob", 1)
    for i = 1, 5 do srv:chat("testroom", "alice", "hello " .. i, { raw = true }) end
    for i = 1, 3 do srv:chat("testroom", "bob", "hi " .. i, { raw = true }) end
    srv:emit("testroom", "changeMedia", { id = "v1", title = "One", seconds = 100, duration = "01:40",
      type = "yt", meta = {}, currentTime = 0, paused = false })
    local sums = PL.wait_rows(url, SUMS, function(r)
      return r[1].messages == 8 and r[1].joins == 2 and r[1].plays == 1 and r[1].peak >= 3
    end, 15, "8 messages, 2 joins, 1 play, 3 users")[1]
    assert.equals(3, sums.peak) -- the bot, alice and bob

    -- Restart: the server replays the chat on join; nothing is counted twice.
    p.stop_clean()
    p = PL.start(srv, opts)
    p.wait_log("testroom: joined as dazbot", 15)
    PL.wait_rows(url, "SELECT count(*) AS n FROM daz_eventfilter_commands WHERE name = 'top' AND active", function(r)
      return r[1].n == 1 end)
    srv:chat("testroom", "bob", "back again", { raw = true })
    srv:chat("testroom", "carol", "new here", { raw = true })
    sums = PL.wait_rows(url, SUMS, function(r) return r[1].messages >= 10 end, 15, "10 messages")[1]
    h.sleep(1) -- a few more aggregation runs (interval 0.3 s) must not change anything
    sums = PL.rows(url, SUMS)[1]
    assert.equals(10, sums.messages)
    assert.equals(2, sums.joins)
    assert.equals(1, sums.plays)
    local daily = PL.rows(url, DAILY)[1]
    assert.equals(10, daily.messages)
    assert.equals(2, daily.joins)
    assert.equals(1, daily.plays)
    assert.equals(3, daily.chatters)
    assert.same({ { username = "alice", messages = 5 }, { username = "bob", messages = 4 },
                  { username = "carol", messages = 1 } }, PL.rows(url, USERS))

    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "dave", "!top", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^top chatters %(7d%): alice 5, bob 4, carol 1", 10, since)
    srv:chat("testroom", "dave", "!stats", { raw = true })
    -- dave's two commands are chat too, counted once the aggregation has run
    -- (every 0.3 s, behind the writer): 10 to 12 messages from 3 or 4 chatters.
    PL.wait_sent(srv, "testroom", "chatMsg",
      "^stats today: 1[0-2] messages from [34] chatters, 2 joins, 1 plays; 1 users now, peak 3", 10, since)
  end)

  it("logged no plugin warnings or errors", function()
    assert.same({}, PL.plugin_problems(p))
  end)
end)
