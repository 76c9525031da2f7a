-- The rooms' reconnect backoff is kept in PostgreSQL (daz_room_backoff): a
-- Daz restarted during a long backoff keeps waiting instead of reconnecting.
local h = require("helpers")
local R = require("rooms")
local room_suite = require("room_suite")

local psql = require("sqlspec").test

local function joins(srv)
  return #R.sent(srv, "testroom", "joinChannel")
end

describe("rooms: backoff kept across restarts", function()
  local room = room_suite.new()
  local srv = room.srv

  it("waits out a saved Duplicate-login backoff after a restart", function()
    local opts = { rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { backoff_initial_ms = 100, duplicate_login_backoff_ms = 60000 } }
    local p = room.start_bot(opts)
    R.wait_state(p, "testroom", "joined")
    srv:kick("testroom", "dazbot", "Duplicate login")
    R.wait_state(p, "testroom", "backoff")
    h.wait_until(function()
      local v = psql("SELECT next_attempt_at > now() + interval '30 seconds' FROM daz_room_backoff WHERE channel = 'testroom'")
      return v == "t"
    end, 10, "the backoff saved in daz_room_backoff")
    p.stop_clean()
    h.wait_until(function() return srv:control("GET", "/control/health").sessions == 0 end, 5, "the old session gone")

    local before = joins(srv)
    local sockets_before = #srv:disconnects()
    opts.keep_backoff = true
    p = room.start_bot(opts)
    p.wait_log("testroom: backing off for .* more %(saved state%)")
    -- It does not reconnect now (the saved wait has most of a minute left).
    assert.has_error(function()
      h.wait_until(function() return joins(srv) > before end, 3, "an early reconnect")
    end)
    -- Nor did it open a socket at all: the saved state is read before any
    -- room connects.
    assert.equals(0, srv:control("GET", "/control/health").sessions)
    assert.equals(sockets_before, #srv:disconnects())
    p.stop_clean()
    psql("DELETE FROM daz_room_backoff WHERE channel = 'testroom'")
  end)
end)
