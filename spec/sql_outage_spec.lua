-- Zero loss across a database outage, with the real bin/daz and a private
-- PostgreSQL cluster of its own: while chat events flow, the server is
-- stopped with `pg_ctl stop -m immediate`; daz keeps taking events (into
-- the spool), and when the server is back every row is present exactly
-- once and in the order it was published.
local h = require("helpers")
local S = require("sqlspec")

local NAME = ("spec-sqlout-%d"):format(math.random(1, 1e8))
local SCRIPT = h.root .. "/scripts/pg-local"
local TOTAL = 4000

local function pg(args)
  local ok, rc, out = h.sh(h.shquote(SCRIPT) .. " --name " .. NAME .. " " .. args)
  assert(ok, ("pg-local %s failed (%s): %s"):format(args, tostring(rc), out))
  return out
end

local function pg_bin()
  local _, _, out = h.sh("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1")
  return (out:match("[^\n]+"))
end

local function crash_server()
  local data = pg("dir"):match("[^\n]+") .. "/data"
  local _, _, uid = h.sh("id -u")
  local as = uid:match("^0%s") and "runuser -u postgres -- " or ""
  local ok, _, out = h.sh(("cd / && %s%s/pg_ctl -D %s -m immediate -w stop"):format(as, pg_bin(), h.shquote(data)))
  assert(ok, "pg_ctl stop -m immediate failed: " .. out)
end

describe("SQL plugin: database outage", function()
  local url, p

  setup(function()
    pg("destroy")
    pg("start")
    url = pg("url"):match("[^\n]+")
  end)

  teardown(function()
    if p and p.running() then p.stop(10) end
    pcall(pg, "destroy")
    h.cleanup_tmp()
  end)

  it("loses nothing, duplicates nothing and keeps the order while the server is away", function()
    p = S.start(url, { flood = S.PRELUDE .. [[
      local P = { name = "flood" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local n = 0
        self.timer = self.bus:every(10, function()
          for _ = 1, 10 do
            if n >= ]] .. TOTAL .. [[ then break end
            n = n + 1
            self.bus:publish("cytube.event.chatMsg",
              { username = "u" .. (n % 7), msg = tostring(n), time = 1700000000000 + n, meta = {} },
              { room = "outage" })
          end
          if n >= ]] .. TOTAL .. [[ and not self.reported then
            self.reported = true
            self.timer:cancel()
            -- Report once the writer has noticed the outage and spooled
            -- (or after 10 s, and the spec says what it saw).
            self.bus:after(300, function()
              local t0 = daz.now()
              while db.stats().spool.rows == 0 and daz.now() - t0 < 10 do daz.sleep(50) end
              result("published", db.stats())
            end)
          end
        end)
      end
      return P ]] }, {
      database = "flush_ms = 20, batch_size = 200, pool_size = 2, connect_timeout_s = 2",
      config = ("event_bus = { buffer_sizes = { [\"cytube.event\"] = 100000 } }"),
    })
    p.wait_log("^ready$", 30)

    -- Stop the server once some rows are in, well before the flow ends.
    h.wait_until(function()
      return tonumber(S.scalar(url, "SELECT count(*) FROM daz_chat_log")) >= 300
    end, 30, "the first rows to be committed")
    crash_server()
    local during = S.latest(p, "published")
    assert.is_nil(during, "the flow ended before the outage began; the spec proves nothing")

    -- The flow goes on into the spool.
    local stats = p.wait_result("published", 60)
    assert.is_true(stats.spool.rows > 0, "expected rows in the spool while the server was down")
    assert.equals(0, stats.writer.rows_lost)
    assert.is_true(#p.logs("spooling it") + stats.writer.rows_spooled > 0)

    pg("start")
    h.wait_until(function()
      return tonumber(S.scalar(url, "SELECT count(*) FROM daz_chat_log")) >= TOTAL
    end, 60, "every row after the server came back")
    -- Nothing more arrives later (no duplicates in flight).
    h.wait_until(function()
      local ok, v = pcall(S.scalar, url, "SELECT 1")
      return ok and v == "1"
    end, 10, "the server")
    assert.equals(("%d|%d|1|%d|0"):format(TOTAL, TOTAL, TOTAL), S.scalar(url, [[
      SELECT count(*), count(DISTINCT message), min(message::int), max(message::int),
             count(*) FILTER (WHERE n <= prev)
        FROM (SELECT message, message::int AS n, lag(message::int) OVER (ORDER BY id) AS prev
                FROM daz_chat_log) s]]))
    assert.equals(0, p.stop_clean(15))
  end)

  it("refuses, counts and logs rows beyond the spool budget, and replays what it kept", function()
    pg("start")
    p = S.start(url, { budget = S.PRELUDE .. [[
      local P = { name = "budget" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:every(50, function()
          if self.sent or db.stats().pool.connected > 0 then return end
          self.sent = true
          for n = 1, 500 do
            self.bus:publish("cytube.event.chatMsg",
              { username = "b", msg = ("budget row %d"):format(n), time = 1800000000000 + n, meta = {} },
              { room = "budget" })
          end
          local deadline = daz.now() + 20
          repeat
            daz.sleep(20)
            local w = db.stats().writer
          until w.rows_spooled + w.rows_lost >= 500 or daz.now() > deadline
          result("budget", db.stats())
        end)
      end
      return P ]] }, {
      database = "flush_ms = 20, batch_size = 20, pool_size = 1, connect_timeout_s = 2",
      config = "spool = { max_bytes = 2048 }",
    })
    p.wait_log("^ready$", 30)
    crash_server()
    local stats = p.wait_result("budget", 60)
    assert.is_true(stats.writer.rows_spooled > 0, "some rows fit in the spool")
    assert.is_true(stats.spool.refused_rows > 0, "the rest were refused")
    assert.equals(500, stats.writer.rows_spooled + stats.spool.refused_rows)
    assert.equals(stats.spool.refused_rows, stats.writer.rows_lost)
    assert.is_true(stats.spool.bytes <= 2048)
    assert.is_true(#p.logs("spool full: refused") >= 1)

    pg("start")
    h.wait_until(function()
      return tonumber(S.scalar(url, "SELECT count(*) FROM daz_chat_log WHERE channel = 'budget'"))
        >= stats.writer.rows_spooled
    end, 60, "the spooled rows after the server came back")
    assert.equals(("%d"):format(stats.writer.rows_spooled),
      S.scalar(url, "SELECT count(*) FROM daz_chat_log WHERE channel = 'budget'"))
    assert.equals(0, p.stop_clean(15))
  end)
end)
