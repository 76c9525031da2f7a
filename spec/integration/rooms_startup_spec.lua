-- CyTube rooms during start-up: a room connects (discovery, WebSocket,
-- handshake) while the database and the plugins are still coming up, but
-- joins its channel only once every plugin has started; what the server
-- sends before that reaches the plugins all the same, in order.
local h = require("helpers")
local room_suite = require("room_suite")
local R = require("rooms")
local sqlspec = require("sqlspec")

-- Index of the first log line whose msg matches pattern (nil if none).
local function line_index(p, pattern)
  for i, l in ipairs(p.lines()) do
    if type(l.msg) == "string" and l.msg:match(pattern) then return i end
  end
end

describe("rooms: start-up", function()
  local room = room_suite.new()
  local srv = room.srv
  local db

  setup(function() db = { sqlspec.create_db() } end)
  teardown(function()
    if db then sqlspec.drop_db(db[1]) end
  end)

  it("connects while a slow migration runs, joins after the plugins started, and replays what came meanwhile", function()
    -- The schema first (daz_room_backoff must exist for the early load).
    local p = room.start_bot({ core = { database = { url = db[2] } } })
    p.wait_log("^ready$")
    p.stop_clean()

    srv:control("POST", "/control/announcement", { title = "Hello", text = "before the join", from = "admin" })
    local slow = sqlspec.migrations({ ["900_slow_start.sql"] = "SELECT pg_sleep(1);" })
    p = room.start_bot({
      rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { database = { url = db[2], migrations_dir = slow } },
      log_level = "debug",
    })
    R.wait_state(p, "testroom", "joined")

    -- Connected during the migration, joined only after the plugins started.
    local connected = line_index(p, "^testroom: connected; joining once the plugins have started$")
    local applied = line_index(p, "^applied 900_slow_start%.sql$")
    local started = line_index(p, "plugin%(s%) started")
    local joining = line_index(p, "^testroom: handshake %-> joining$")
    assert.is_truthy(connected, "the room did not wait connected")
    assert.is_true(connected < applied, "connected only after the migration")
    assert.is_true(applied < started and started < joining, "joined before the plugins started")
    assert.equals("joinChannel", R.sent(srv, "testroom", nil, "dazbot")[1].event)

    -- The server's connect-time events came while the room waited: the probe
    -- (subscribed in its start) still got them, before the join's, marked as
    -- replayed as they always were (everything before the first userlist).
    local evs = R.events(p, nil, "testroom")
    local function first(type_)
      for i, e in ipairs(evs) do if e.type == type_ then return i, e end end
    end
    local i_rank, rank = first("cytube.event.rank")
    local i_ann, ann = first("cytube.event.announcement")
    local i_list = first("cytube.event.userlist")
    assert.is_truthy(rank, "no rank event")
    assert.is_truthy(ann, "no announcement event")
    assert.equals(-1, rank.data)
    assert.equals("before the join", ann.data.text)
    assert.is_true(R.has_tag(rank, "replayed") and R.has_tag(ann, "replayed"))
    assert.is_true(i_rank < i_list and i_ann < i_list)
    p.stop_clean()
    srv:control("POST", "/control/announcement", {})
  end)

  it("tells the plugins about a room that failed before they started, and saves its backoff", function()
    -- Nothing listens on port 1: discovery fails at once, before the plugins
    -- (and the SQL plugin's sql.exec) are up.
    local p = room.start_bot({
      rooms = { { channel = "deadroom", server = "http://127.0.0.1:1" } },
      core = { database = { url = db[2] }, backoff_initial_ms = 60000 },
    })
    local st = R.wait_state(p, "deadroom", "backoff")
    assert.matches("discovery failed", st.detail)
    -- The save made before the database was ready is written once it is (the
    -- next attempt, which would save again, is most of a minute away).
    h.wait_until(function()
      return sqlspec.scalar(db[2], "SELECT attempts FROM daz_room_backoff WHERE channel = 'deadroom'") == "1"
    end, 5, "the early backoff saved")
    p.stop_clean()
  end)
end)
