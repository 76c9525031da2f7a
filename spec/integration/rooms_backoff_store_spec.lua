-- The rooms' reconnect backoff is kept in PostgreSQL (daz_room_backoff): a
-- Daz restarted during a long backoff after connection failures keeps
-- waiting instead of reconnecting (no reconnect storm over a crash loop).
-- The long wait after a "Duplicate login" kick is not kept: that kick was
-- about another session holding the account, and a process started later is
-- meant to take over. `daz -reset-backoff [channel]` clears what is saved.
local h = require("helpers")
local daz = require("daz")
local R = require("rooms")
local room_suite = require("room_suite")

local psql = require("sqlspec").test

local function joins(srv)
  return #R.sent(srv, "testroom", "joinChannel")
end

local SAVED_LINE = "testroom: backing off for .* more %(saved state; `daz %-reset%-backoff testroom` clears it%)"

-- Runs `daz -reset-backoff ...` with the database the specs' daz uses.
local function reset_backoff(...)
  local config = daz.write_config("return {}")
  local args = { "-config", config, "-reset-backoff", ... }
  return daz.run(args, { DAZ_LOCAL_DATABASE_URL = os.getenv("DAZ_TEST_PG_URL"), DAZ_SPOOL__DIR = h.tmpdir() .. "/spool" })
end

describe("rooms: backoff kept across restarts", function()
  local room = room_suite.new()
  local srv = room.srv
  local p
  after_each(function()
    p = nil
    psql("DELETE FROM daz_room_backoff")
  end)

  local opts = function(extra)
    local core = { backoff_initial_ms = 60000, duplicate_login_backoff_ms = 60000 }
    for k, v in pairs(extra or {}) do core[k] = v end
    return { rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } }, core = core }
  end

  -- Joins, loses the connection, and leaves daz waiting 45-75 s (saved).
  local function saved_backoff()
    p = room.start_bot(opts())
    R.wait_state(p, "testroom", "joined")
    srv:drop("testroom", "dazbot")
    R.wait_state(p, "testroom", "backoff")
    h.wait_until(function()
      local v = psql("SELECT next_attempt_at > now() + interval '30 seconds' FROM daz_room_backoff WHERE channel = 'testroom'")
      return v == "t"
    end, 10, "the backoff saved in daz_room_backoff")
    p.stop_clean()
    h.wait_until(function() return srv:control("GET", "/control/health").sessions == 0 end, 5, "the old session gone")
  end

  it("waits out a saved backoff after connection failures, and says how to clear it", function()
    saved_backoff()
    local before = joins(srv)
    local sockets_before = #srv:disconnects()
    local o = opts()
    o.keep_backoff = true
    p = room.start_bot(o)
    p.wait_log(SAVED_LINE)
    -- It does not reconnect now (the saved wait has most of a minute left).
    assert.has_error(function()
      h.wait_until(function() return joins(srv) > before end, 3, "an early reconnect")
    end)
    -- Nor did it open a socket at all: the saved state is read before any
    -- room connects.
    assert.equals(0, srv:control("GET", "/control/health").sessions)
    assert.equals(sockets_before, #srv:disconnects())
  end)

  it("does not keep a Duplicate-login backoff for a process started later", function()
    p = room.start_bot(opts())
    R.wait_state(p, "testroom", "joined")
    srv:kick("testroom", "dazbot", "Duplicate login")
    local st = R.wait_state(p, "testroom", "backoff")
    assert.matches("Duplicate login", st.detail)
    -- This process waits the full minute ...
    assert.has_error(function()
      h.wait_until(function() return joins(srv) > 1 end, 2, "an early rejoin")
    end)
    p.stop_clean()
    h.wait_until(function() return srv:control("GET", "/control/health").sessions == 0 end, 5, "the old session gone")
    assert.equals("", psql("SELECT channel FROM daz_room_backoff WHERE next_attempt_at IS NOT NULL"))

    -- ... a new one joins at once.
    local o = opts()
    o.keep_backoff = true
    p = room.start_bot(o)
    R.wait_state(p, "testroom", "joined", 10)
    assert.equals(0, #p.logs("saved state"))
  end)

  it("clears the saved backoff with -reset-backoff, for one channel or every room", function()
    saved_backoff()
    psql("INSERT INTO daz_room_backoff (channel, attempts, next_attempt_at, updated_at) " ..
         "VALUES ('otherroom', 3, now() + interval '10 minutes', now())")

    local ok, code, out = reset_backoff("TestRoom") -- channel names match in any case
    assert.is_true(ok, out)
    assert.equals(0, code)
    assert.matches("cleared the saved backoff of TestRoom (1 row)", out, 1, true)
    assert.equals("", psql("SELECT channel FROM daz_room_backoff WHERE channel = 'testroom'"))
    assert.equals("otherroom", psql("SELECT channel FROM daz_room_backoff"))

    -- Restarted, the room joins at once.
    local o = opts()
    o.keep_backoff = true
    p = room.start_bot(o)
    R.wait_state(p, "testroom", "joined", 10)
    assert.equals(0, #p.logs("saved state"))
    p.stop_clean()

    ok, code, out = reset_backoff()
    assert.is_true(ok, out)
    assert.matches("cleared the saved backoff of every room (", out, 1, true)
    assert.equals("", psql("SELECT channel FROM daz_room_backoff WHERE next_attempt_at IS NOT NULL"))
    assert.equals("0", psql("SELECT count(*) FROM daz_room_backoff"))
  end)

  it("lists -reset-backoff in -help", function()
    local ok, _, out = daz.run({ "-help" })
    assert.is_true(ok, out)
    assert.matches("-reset-backoff [CHANNEL]", out, 1, true)
  end)
end)
