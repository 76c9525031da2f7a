-- Health with the real rooms and database: /health/ready follows the room
-- (503 until joined, 200 once joined, 503 when the server drops it), and
-- /health and /metrics carry the room and database components.
local h = require("helpers")
local daz = require("daz")
local cjson = require("cjson")
local room_suite = require("room_suite")

describe("health with rooms and the database", function()
  local room = room_suite.new()
  local srv = room.srv

  it("flips /health/ready with the room and reports rooms and the database", function()
    local port = h.free_port()
    local base = ("http://127.0.0.1:%d"):format(port)
    local p = room.track(daz.start({
      config = ([[return {
        core = { server = %q, login_delay_ms = 1500, backoff_initial_ms = 500,
                 rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } } },
        health = { port = %d, refresh_ms = 100 },
      }]]):format(srv.url, port),
      env = { DAZ_HEALTH__PORT = tostring(port) },
    }))
    -- Before the login (delayed 1.5 s): not ready, and the reason names the room.
    h.wait_until(function() return (h.http("GET", base .. "/health/ready")) ~= 0 end, 10, "the health server")
    local status, body = h.http("GET", base .. "/health/ready")
    assert.equals(503, status, body)
    assert.truthy(body:find("room testroom", 1, true), body)

    h.wait_until(function() return (h.http("GET", base .. "/health/ready")) == 200 end, 15, "ready once joined")
    local _, hb = h.http("GET", base .. "/health")
    local doc = cjson.decode(hb)
    assert.equals("up", doc.status, hb)
    assert.is_true(doc.components.database.connected)
    assert.is_true(doc.components.database.migrated)
    assert.equals(0, doc.components.spool.rows)
    local _, metrics = h.http("GET", base .. "/metrics")
    assert.truthy(metrics:find('daz_room_connected{room="testroom"} 1', 1, true), metrics)
    assert.truthy(metrics:match("daz_db_queries_total %d+"), metrics)

    -- The server drops the bot: not ready again, until it has rejoined.
    srv:drop()
    h.wait_until(function() return (h.http("GET", base .. "/health/ready")) == 503 end, 10, "503 after the drop")
    h.wait_until(function() return (h.http("GET", base .. "/health/ready")) == 200 end, 20, "ready after rejoining")
  end)
end)
