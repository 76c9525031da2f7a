-- The batch log writer through the real bin/daz and PostgreSQL: logger rules
-- route events to the right tables and columns, replayed chat is stored
-- once, and bad rows are rejected (counted, logged) without taking good
-- rows of the same batch with them.
local h = require("helpers")
local S = require("sqlspec")

-- A plugin that publishes the given events (Lua table text) once started,
-- then reports the writer's counters when they show every row handled.
local function publisher(events_lua, expect_handled)
  return S.PRELUDE .. [[
    local P = { name = "publisher" }
    function P:init(bus) self.bus = bus end
    function P:start()
      self.bus:after(1, function()
        for _, e in ipairs(]] .. events_lua .. [[) do
          self.bus:publish(e[1], e[2], e[3])
        end
        local deadline = daz.now() + 15
        repeat
          daz.sleep(20)
          local w = db.stats().writer
        until w.rows_written + w.rows_rejected >= ]] .. expect_handled .. [[ or daz.now() > deadline
        result("writer", db.stats().writer)
      end)
    end
    return P ]]
end

describe("SQL plugin: batch log writer", function()
  local dbname, url, p

  before_each(function()
    dbname, url = S.create_db()
  end)

  after_each(function()
    if p and p.running() then assert.equals(0, p.stop_clean()) end
    p = nil
    S.drop_db(dbname)
    h.cleanup_tmp()
  end)

  it("routes chat, PMs, joins and leaves to their tables by the default rules", function()
    p = S.start(url, { publisher = publisher([[{
      { "cytube.event.chatMsg", { username = "alice", msg = "hello &amp; 'welcome'", time = 1700000000123,
          meta = { addClass = "action" } }, { room = "room1" } },
      { "cytube.event.pm", { username = "bob", to = "alice", msg = "psst", time = 1700000001000, meta = {} },
          { room = "room1" } },
      { "cytube.event.addUser", { name = "carol", rank = 2, profile = { image = "", text = "" },
          meta = { afk = false, muted = false } }, { room = "room2" } },
      { "cytube.event.userLeave", { name = "carol" }, { room = "room2" } },
      { "cytube.event.mediaUpdate", { currentTime = 1, paused = false }, { room = "room1" } },
    }]], 4) })
    local w = p.wait_result("writer", 30)
    assert.equals(4, w.rows_written)
    assert.equals(0, w.rows_rejected)
    assert.equals("room1|alice|hello &amp; 'welcome'|2023-11-14 22:13:20.123+00|action",
      S.scalar(url, "SELECT channel, username, message, message_time, meta->>'addClass' FROM daz_chat_log"))
    assert.equals("room1|bob|alice|psst|2023-11-14 22:13:21+00",
      S.scalar(url, "SELECT channel, from_user, to_user, message, message_time FROM daz_private_messages"))
    assert.equals("room2|carol|join|2|false\nroom2|carol|leave||\n",
      S.psql(url, "SELECT channel, username, event_type, rank, meta->>'afk' FROM daz_user_activity ORDER BY id"))
    -- raw events are off by default
    assert.equals("0", S.scalar(url, "SELECT count(*) FROM daz_core_events"))
  end)

  it("follows rules from the config: custom tables and fields, tags, a default turned off, raw events on", function()
    local migrations = S.migrations({ ["900_spec_custom.sql"] = [[
      CREATE TABLE daz_spec_custom (id bigserial PRIMARY KEY, kind text NOT NULL, who text, score int,
        doc jsonb, at timestamptz, source text, room text);
    ]] })
    p = S.start(url, { publisher = publisher([[{
      { "game.score", { user = { name = "dave" }, points = 17, time = 1700000000000, extra = { x = 1 } },
          { room = "r1", tags = { "ranked" } } },
      { "game.score", { user = { name = "erin" }, points = 3, time = 1700000000500 }, { room = "r1" } },
      { "cytube.event.chatMsg", { username = "alice", msg = "not logged", time = 1, meta = {} }, { room = "r1" } },
    }]], 3) }, {
      database = ("flush_ms = 50, migrations_dir = %q"):format(migrations),
      config = [[loggers = {
        chat = { enabled = false },
        core_events = { enabled = true, event_pattern = "game.*" },
        ranked = { event_pattern = "game.score", tags = { "ranked" }, table = "daz_spec_custom",
          fields = { kind = "type", who = "data.user.name", score = "data.points", doc = "data",
                     at = "data.time", source = "=config", room = "room" } },
      }]],
    })
    local w = p.wait_result("writer", 30)
    assert.equals(0, w.rows_rejected)
    assert.equals("game.score|dave|17|1|2023-11-14 22:13:20+00|config|r1",
      S.psql(url, "SELECT kind, who, score, doc->'extra'->>'x', at, source, room FROM daz_spec_custom"):match("^[^\n]*"))
    assert.equals("1", S.scalar(url, "SELECT count(*) FROM daz_spec_custom"))
    assert.equals("0", S.scalar(url, "SELECT count(*) FROM daz_chat_log"))
    assert.equals("game.score|r1|erin|[\"room:r1\"]", S.psql(url,
      "SELECT event_type, channel, payload->'user'->>'name', tags FROM daz_core_events ORDER BY id"):match("\n([^\n]*)"))
  end)

  it("stores replayed chat once", function()
    local chat = [[
      { "cytube.event.chatMsg", { username = "u1", msg = "first", time = 1700000000001, meta = {} }, { room = "rr" } },
      { "cytube.event.chatMsg", { username = "u2", msg = "second", time = 1700000000002, meta = {} }, { room = "rr" } },
      { "cytube.event.chatMsg", { username = "u1", msg = "same text", time = 1700000000003, meta = {} }, { room = "rr" } },
    ]]
    local replay = chat:gsub('{ room = "rr" }', '{ room = "rr", tags = { "replayed" } }')
    -- in one batch, and again later in another batch and from another process
    p = S.start(url, { publisher = publisher("{" .. chat .. replay .. "}", 6) })
    local w = p.wait_result("writer", 30)
    assert.equals(6, w.rows_written)
    assert.equals(0, p.stop_clean())
    p = S.start(url, { publisher = publisher("{" .. replay .. [[
      { "cytube.event.chatMsg", { username = "u1", msg = "same text", time = 1700000000004, meta = {} }, { room = "rr" } },
      { "cytube.event.chatMsg", { username = "u1", msg = "first", time = 1700000000001, meta = {} }, { room = "other" } },
    }]], 5) })
    p.wait_result("writer", 30)
    assert.equals("rr|u1|first\nrr|u2|second\nrr|u1|same text\nrr|u1|same text\nother|u1|first\n",
      S.psql(url, "SELECT channel, username, message FROM daz_chat_log ORDER BY id"))
  end)

  it("rejects bad rows with a reason and a count, and writes the good rows of the same batch", function()
    p = S.start(url, { publisher = publisher([[{
      { "log.request", { table = "daz_chat_log", row = { channel = "c", username = "ok1", message = "a", message_time = 1000 } } },
      { "log.request", { table = "daz_no_such_table", row = { x = 1 } } },
      { "log.request", { table = "daz_chat_log", row = { channel = "c", username = "nomsg", message_time = 1000 } } },
      { "log.request", { table = "daz_chat_log", row = { channel = "c", username = "badtime", message = "b", message_time = { 1 } } } },
      { "log.request", { table = "daz_chat_log", row = { channel = "c", username = "badcol", message = "b", message_time = 1, nope = 1 } } },
      { "log.request", { table = "daz_chat_log", row = { channel = "c", username = "badrank", message = "b", message_time = 1, rank = "high" } } },
      { "log.request", { rows = "not a row" } },
      { "log.request", { table = "daz_user_activity", row = { channel = "c", username = "ok2", event_type = "join", rank = 1, meta = cjson.null } } },
      { "log.request", { table = "daz_user_activity", row = { channel = "c", username = "dbrejects", event_type = "dance", rank = 1, meta = cjson.null } } },
      { "log.request", { table = "daz_user_activity", row = { channel = "c", username = "ok3", event_type = "leave", rank = 1, meta = cjson.null } } },
      { "log.request", { table = "daz_chat_log", row = { channel = "c", username = "ok4", message = "c", message_time = "2024-01-02T03:04:05Z" } } },
    }]], 11) })
    local w = p.wait_result("writer", 30)
    assert.equals(4, w.rows_written)
    assert.equals(7, w.rows_rejected)
    assert.equals(1, w.rejected_unknown_table)
    assert.equals(5, w.rejected_bad_row)
    assert.equals(1, w.rejected_by_database)
    assert.is_true(w.batches_split >= 1)
    assert.equals("ok1\nok4\n", S.psql(url, "SELECT username FROM daz_chat_log ORDER BY id"))
    assert.equals("ok2\nok3\n", S.psql(url, "SELECT username FROM daz_user_activity ORDER BY id"))
    assert.is_true(#p.logs("unknown table daz_no_such_table") >= 1)
    assert.is_true(#p.logs("missing field message") >= 1)
    assert.is_true(#p.logs("rejected by the database: 23514") >= 1)
    assert.is_true(p.running())
  end)
end)
