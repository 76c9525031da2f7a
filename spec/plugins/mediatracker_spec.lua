-- MediaTracker: plays with real start times and lengths, the queue mirrored
-- exactly (uids and `after`), the media library, and `np` / `mediastats`.
local h = require("helpers")
local cytube = require("cytube")
local sql = require("sqlspec")
local PL = require("plugins")

local function item(uid, id, title, seconds, queueby)
  return { uid = uid, temp = false, queueby = queueby,
           media = { id = id, title = title, seconds = seconds, duration = "00:00", type = "yt", meta = {} } }
end

local function change(it, current_time)
  local m = it.media
  return { id = m.id, title = m.title, seconds = m.seconds, duration = m.duration, type = m.type, meta = {},
           currentTime = current_time or 0, paused = false }
end

local QUEUE = "SELECT position, uid, media_id, temp, queued_by FROM daz_mediatracker_queue " ..
  "WHERE channel = 'testroom' ORDER BY position"
local PLAYS = "SELECT id, media_id, title, queued_by, uid, extract(epoch FROM started_at) AS started, " ..
  "extract(epoch FROM ended_at) AS ended, played_s FROM daz_mediatracker_plays WHERE channel = 'testroom' ORDER BY id"

local function uids(rows)
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = r.uid end
  return out
end

describe("mediatracker", function()
  local srv, p, dbname, url
  local one = item(1, "vid1", "Song One", 200, "alice")
  local two = item(2, "vid2", "Song Two", 300, "bob")
  local three = item(3, "vid3", "Song Three", 60, "carol")

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    dbname, url = sql.create_db()
    p = PL.start(srv, { url = url })
    p.wait_log("testroom: joined as dazbot", 15)
  end)

  teardown(function() PL.cleanup(p, srv, dbname) end)

  it("mirrors the queue from playlist, queue, moveVideo, delete and setTemp", function()
    srv:emit("testroom", "playlist", { one, two })
    PL.wait_rows(url, QUEUE, function(r) return #r == 2 end)
    srv:emit("testroom", "queue", { item = three, after = 1 })
    local rows = PL.wait_rows(url, QUEUE, function(r) return #r == 3 end)
    assert.same({ 1, 3, 2 }, uids(rows))
    srv:emit("testroom", "moveVideo", { from = 2, after = "prepend" })
    rows = PL.wait_rows(url, QUEUE, function(r) return r[1].uid == 2 end)
    assert.same({ 2, 1, 3 }, uids(rows))
    srv:emit("testroom", "moveVideo", { from = 2, after = 3 })
    rows = PL.wait_rows(url, QUEUE, function(r) return r[3].uid == 2 end)
    assert.same({ 1, 3, 2 }, uids(rows))
    srv:emit("testroom", "delete", { uid = 3 })
    srv:emit("testroom", "setTemp", { uid = 2, temp = true })
    rows = PL.wait_rows(url, QUEUE, function(r) return #r == 2 and r[2].temp end)
    assert.same({ 1, 2 }, uids(rows))
    assert.equals("bob", rows[2].queued_by)
    assert.same({ 1, 2 }, { rows[1].position, rows[2].position })
  end)

  it("records plays with the time they really played, and answers np", function()
    local t0 = os.time()
    srv:emit("testroom", "setCurrent", 1)
    local t_start = h.now()
    srv:emit("testroom", "changeMedia", change(one, 0))
    local rows = PL.wait_rows(url, PLAYS, function(r) return #r == 1 end)
    assert.equals("alice", rows[1].queued_by)
    assert.equals(1, rows[1].uid)
    assert.is_true(math.abs(rows[1].started - t0) <= 3)

    local since = PL.cursor(srv, "testroom")
    srv:chat("testroom", "dave", "!np", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^now playing: Song One %[3m %d+s left, queued by alice%]$", 10, since)

    h.sleep(1.5) -- real playing time to measure (the waits have deadlines)
    srv:emit("testroom", "mediaUpdate", { currentTime = h.now() - t_start - 0.1, paused = false })
    srv:emit("testroom", "setCurrent", 2)
    srv:emit("testroom", "changeMedia", change(two, 0))
    local elapsed = h.now() - t_start
    rows = PL.wait_rows(url, PLAYS, function(r) return #r == 2 end)
    local first = rows[1]
    -- It played from the first changeMedia to the second: at least the 1.5 s
    -- slept, at most what the spec measured around it.
    assert.is_true(first.played_s >= 1.3 and first.played_s <= elapsed + 0.5,
      ("played_s %.2f, elapsed %.2f"):format(first.played_s, elapsed))
    assert.is_true(math.abs((first.ended - first.started) - first.played_s) < 1)
    assert.is_nil(rows[2].ended)
    assert.equals("bob", rows[2].queued_by)

    -- The join replay of the same medium continues the play: no new row.
    srv:drop("testroom", "dazbot")
    h.wait_until(function() return #p.logs("testroom: joined as dazbot") >= 2 end, 15, "the rejoin")
    srv:emit("testroom", "changeMedia", change(two, 10))   -- live again, same medium, mid-play
    srv:chat("testroom", "erin", "!np", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^now playing: Song Two %[4m %d+s left, queued by bob%]$", 10, since)
    assert.equals(2, #PL.rows(url, PLAYS))

    local lib = PL.rows(url, "SELECT media_id, play_count, title FROM daz_mediatracker_media ORDER BY media_id")
    assert.same({ { media_id = "vid1", play_count = 1, title = "Song One" },
                  { media_id = "vid2", play_count = 1, title = "Song Two" } }, lib)

    srv:chat("testroom", "erin", "!mediastats", { raw = true })
    PL.wait_sent(srv, "testroom", "chatMsg", "^media stats: 2 plays today, 2 in all of 2 titles", 10, since)
  end)

  it("continues the open play after a restart when the same medium is still on", function()
    local before = PL.rows(url, PLAYS)
    assert.equals(2, #before)
    p.stop_clean()
    p = PL.start(srv, { url = url })
    p.wait_log("testroom: joined as dazbot", 15)
    srv:emit("testroom", "changeMedia", change(two, 20))
    srv:emit("testroom", "setCurrent", 3)
    srv:emit("testroom", "changeMedia", change(three, 0))
    local rows = PL.wait_rows(url, PLAYS, function(r) return #r == 3 end)
    assert.equals(before[2].id, rows[2].id)
    assert.is_true(rows[2].played_s >= 20 and rows[2].played_s < 25, "played_s " .. rows[2].played_s)
    assert.is_nil(rows[3].ended)
    assert.equals("vid3", rows[3].media_id)
  end)

  it("logged no plugin warnings or errors", function()
    assert.same({}, PL.plugin_problems(p))
  end)
end)
