-- Retry, end to end: the test server drops the bot, a plugin sends a chat
-- line while the room is down, the core publishes cytube.send.failed, the
-- retry plugin stores it, and once the room is back the line arrives at the
-- server exactly once — also across a restart, and with two Daz processes
-- sharing one database.
local h = require("helpers")
local daz = require("daz")
local room_suite = require("room_suite")

local psql = require("sqlspec").test

-- Sends `line` once, the first time the room goes down after being joined.
local SENDER = [[
  local P = { name = "spec_sender" }
  function P:init(bus, cfg)
    local joined, sent = false, false
    bus:subscribe("cytube.room.status", function(ev)
      if ev.data.state == "joined" then joined = true
      elseif joined and not sent and cfg.line then
        sent = true
        bus:publish("cytube.send", { room = ev.data.channel, msg = cfg.line })
        daz.log.info("SENT WHILE DOWN")
      end
    end)
  end
  return P ]]

local function start(srv, user, line, extra)
  local dir = daz.plugin_dir({ spec_sender = SENDER })
  return daz.start({ config = ([[return {
      plugin_dirs = { "lua/plugins", %q },
      core = { server = %q, login_delay_ms = 100, backoff_initial_ms = %d,
               rooms = { { channel = "testroom", username = %q, password = %q } } },
      plugins = { spec_sender = { line = %s },
                  retry = { poll_ms = 100, policies = { cytube_command = { base_ms = 300, max_ms = 1000,
                            max_attempts = 50, timeout_ms = 3000 } } } },
    }]]):format(dir, srv.url, extra and extra.backoff or 3000, user, user .. "-pass-1",
      line and ("%q"):format(line) or "nil") })
end

local function count_chat(srv, text)
  local n = 0
  for _, e in ipairs(srv:received("testroom")) do
    if e.event == "chatMsg" and type(e.data) == "table" and e.data.msg == text then n = n + 1 end
  end
  return n
end

describe("retry with the rooms", function()
  local room = room_suite.new()
  local srv = room.srv
  local track = room.track

  local function wait_joined(p)
    return p.wait_log("testroom: joined as", 20)
  end

  it("delivers a line sent while the room was down exactly once, after the rejoin", function()
    local line = "retried line " .. os.time()
    local p = track(start(srv, "dazbot", line))
    wait_joined(p)
    psql("DELETE FROM daz_retry_queue WHERE payload->>'msg' LIKE 'retried line%'")
    srv:drop()
    p.wait_log("SENT WHILE DOWN", 10)
    h.wait_until(function() return count_chat(srv, line) == 1 end, 30, "the retried line at the server")
    h.wait_until(function()
      return psql(("SELECT status FROM daz_retry_queue WHERE payload->>'msg' = '%s'"):format(line)) == "completed"
    end, 10, "the row completed")
    h.sleep(1.0) -- a window for a wrong second delivery (pacing, not a wait on a condition)
    assert.equals(1, count_chat(srv, line))
  end)

  it("still delivers it when Daz restarts in between", function()
    local line = "restart line " .. os.time()
    local p = track(start(srv, "dazbot", line, { backoff = 60000 }))
    wait_joined(p)
    srv:drop()
    p.wait_log("SENT WHILE DOWN", 10)
    h.wait_until(function()
      return psql(("SELECT count(*) FROM daz_retry_queue WHERE payload->>'msg' = '%s'"):format(line)) == "1"
    end, 10, "the stored failure")
    p.stop_clean()            -- the room is still down: the line is only in the table
    assert.equals(0, count_chat(srv, line))
    track(start(srv, "dazbot", nil))
    h.wait_until(function() return count_chat(srv, line) == 1 end, 30, "the line after the restart")
    h.sleep(1.0)
    assert.equals(1, count_chat(srv, line))
  end)

  it("never delivers a retried line twice with two processes on one database", function()
    wait_joined(track(start(srv, "dazbot", nil)))
    wait_joined(track(start(srv, "bob", nil)))
    local values = {}
    for i = 1, 30 do
      values[#values + 1] = ([[('cytube_command', 'cytube.send', '{"room":"testroom","msg":"two-%d"}', 'two-%d-%d', 50)]])
        :format(i, i, os.time())
    end
    psql("DELETE FROM daz_retry_queue WHERE payload->>'msg' LIKE 'two-%'") -- rows of an earlier run
    psql("INSERT INTO daz_retry_queue (operation, event_type, payload, correlation_id, max_attempts) VALUES "
      .. table.concat(values, ","))
    h.wait_until(function()
      return psql("SELECT count(*) FROM daz_retry_queue WHERE status = 'completed' AND payload->>'msg' LIKE 'two-%'") == "30"
    end, 40, "all 30 completed")
    h.sleep(1.0)
    for i = 1, 30 do assert.equals(1, count_chat(srv, "two-" .. i), "two-" .. i) end
  end)
end)
