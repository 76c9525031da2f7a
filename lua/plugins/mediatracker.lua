-- mediatracker: what plays in each channel. Every play with its start time
-- and how long it really played (daz_mediatracker_plays), the playlist
-- mirrored from playlist/queue/delete/moveVideo/setTemp
-- (daz_mediatracker_queue), and a library of every medium played
-- (daz_mediatracker_media). Commands `np` and `mediastats`.
--
-- A play starts with changeMedia and ends with the next one. Its length is
-- the position last seen (changeMedia/mediaUpdate currentTime) plus the time
-- since then while not paused, capped at the media's duration. The
-- changeMedia CyTube sends on every join (replayed) continues the open play
-- when the same medium is still on, also after a restart.
local commands = require("commands")
local duration = require("duration")
local cut = require("text").cut
local cjson = require("cjson")

local S = require("core.schema")

local P = { name = "mediatracker" }

P.settings = {
  cooldown = S.num { check = S.range(0) },  -- s per (user, command); absent: EventFilter's default
}

local MAX_TEXT = 300
local POSITION_SAVE_S = 10   -- how often the position of a play is written

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg
  self.rooms = {}
  self.stats = { plays = 0, queue_writes = 0, db_errors = 0 }
end

function P:save() return { rooms = self.rooms } end
function P:restore(state) self.rooms = state.rooms or {} end

local function str(v, max)
  if type(v) ~= "string" and type(v) ~= "number" then return nil end
  v = tostring(v):gsub("%c", " ")
  return cut(v, max or MAX_TEXT)
end

local function num(v) return type(v) == "number" and v == v and v or nil end

function P:room(name)
  local r = self.rooms[name]
  if not r then
    r = { order = {}, items = {} }
    self.rooms[name] = r
  end
  return r
end

function P:check(what, res, err)
  if err then
    self.stats.db_errors = self.stats.db_errors + 1
    daz.log.warn("%s: %s", what, tostring(err))
  end
  return res
end

-- ------------------------------------------------------------ the queue

local function item_of(raw)
  if type(raw) ~= "table" or type(raw.media) ~= "table" or not num(raw.uid) then return nil end
  local m = raw.media
  local id, kind = str(m.id), str(m.type, 20)
  if not id or not kind then return nil end
  return { uid = math.tointeger(raw.uid) or raw.uid, id = id, type = kind, title = str(m.title),
           seconds = num(m.seconds) or 0, temp = raw.temp == true, queueby = str(raw.queueby, 40) }
end

local function index_of(r, uid)
  for i, u in ipairs(r.order) do if u == uid then return i end end
end

-- Places uid after `after` (a uid, "prepend" or "append"; unknown: the end).
local function place(r, uid, after)
  local old = index_of(r, uid)
  if old then table.remove(r.order, old) end
  if after == "prepend" then
    table.insert(r.order, 1, uid)
    return
  end
  local i = after ~= "append" and index_of(r, after)
  if i then table.insert(r.order, i + 1, uid) else r.order[#r.order + 1] = uid end
end

-- The whole mirror is rewritten in one transaction: playlist changes come at
-- human speed, and a rewrite can never drift from the order kept here.
function P:write_queue(room)
  local r = self:room(room)
  local rows = {}
  for pos, uid in ipairs(r.order) do
    local it = r.items[uid]
    rows[#rows + 1] = { position = pos, uid = it.uid, type = it.type, id = it.id, title = it.title,
                        seconds = it.seconds, temp = it.temp, queueby = it.queueby }
  end
  self.stats.queue_writes = self.stats.queue_writes + 1
  local res, err = db:batch({
    { "DELETE FROM daz_mediatracker_queue WHERE channel = $1", room },
    { [[INSERT INTO daz_mediatracker_queue
          (channel, position, uid, media_type, media_id, title, duration_s, temp, queued_by)
        SELECT $1, x.position, x.uid, x.type, x.id, x.title, x.seconds, coalesce(x.temp, false), x.queueby
        FROM jsonb_to_recordset($2::jsonb) AS x(position int, uid bigint, type text, id text, title text,
          seconds float8, temp boolean, queueby text)]], room, #rows > 0 and cjson.encode(rows) or "[]" },
  })
  self:check("write the queue of " .. room, res, err)
end

function P:on_playlist(ev)
  if type(ev.data) ~= "table" then return end
  local r = self:room(ev.room)
  r.order, r.items = {}, {}
  for _, raw in ipairs(ev.data) do
    local it = item_of(raw)
    if it and not r.items[it.uid] then
      r.items[it.uid] = it
      r.order[#r.order + 1] = it.uid
    end
  end
  self:write_queue(ev.room)
end

function P:on_queue(ev)
  local d = ev.data
  local it = type(d) == "table" and item_of(d.item)
  if not it then return end
  local r = self:room(ev.room)
  r.items[it.uid] = it
  place(r, it.uid, d.after)
  self:write_queue(ev.room)
end

function P:on_delete(ev)
  local uid = type(ev.data) == "table" and num(ev.data.uid)
  local r = self:room(ev.room)
  local i = uid and index_of(r, uid)
  if not i then return end
  table.remove(r.order, i)
  r.items[uid] = nil
  self:write_queue(ev.room)
end

function P:on_move(ev)
  local d = ev.data
  local r = self:room(ev.room)
  if type(d) ~= "table" or not num(d.from) or not r.items[d.from] then return end
  place(r, d.from, d.after)
  self:write_queue(ev.room)
end

function P:on_settemp(ev)
  local d = ev.data
  local r = self:room(ev.room)
  local it = type(d) == "table" and num(d.uid) and r.items[d.uid]
  if not it then return end
  it.temp = d.temp == true
  local res, err = db:exec("UPDATE daz_mediatracker_queue SET temp = $3 WHERE channel = $1 AND uid = $2",
    ev.room, it.uid, it.temp)
  self:check("setTemp", res, err)
end

-- ------------------------------------------------------------ plays

-- Seconds the play has run by `now`.
local function played(play, now)
  local pos = play.position or 0
  if not play.paused then pos = pos + (now - play.position_at) end
  pos = math.max(0, pos)
  if play.seconds > 0 then pos = math.min(pos, play.seconds) end
  return pos
end

function P:on_change(ev)
  local d = ev.data
  if type(d) ~= "table" then return end
  local id, kind = str(d.id), str(d.type, 20)
  if not id or not kind then return end
  local room, now = ev.room, daz.now()
  local r = self:room(room)
  local ct = num(d.currentTime) or 0
  local play = r.play

  -- The same medium still on (the join replay, a reconnect): go on with it.
  if play and play.id == id and play.type == kind and (ev.replayed or ct > 5) then
    play.position, play.position_at, play.paused = math.max(ct, 0), now, d.paused == true
    return
  end
  if not play then
    local rows = db:query([[SELECT id, media_type, media_id, extract(epoch FROM started_at) AS started
      FROM daz_mediatracker_plays WHERE channel = $1 AND ended_at IS NULL]], room)
    local open = rows and rows[1]
    if open and open.media_type == kind and open.media_id == id and (ev.replayed or ct > 5) then
      r.play = { db_id = open.id, id = id, type = kind, title = str(d.title), seconds = num(d.seconds) or 0,
                 started = open.started, position = math.max(ct, 0), position_at = now, paused = d.paused == true,
                 saved_at = now, queueby = self:queued_by(r, id) }
      return
    end
  end

  local seconds = num(d.seconds) or 0
  local new = { id = id, type = kind, title = str(d.title), seconds = seconds,
                started = now - math.max(ct, 0), position = math.max(ct, 0), position_at = now,
                paused = d.paused == true, saved_at = now, uid = r.current_uid,
                queueby = self:queued_by(r, id) }
  local close
  if play and play.db_id then
    close = { "UPDATE daz_mediatracker_plays SET ended_at = to_timestamp($2), played_s = $3, updated_at = now() " ..
              "WHERE id = $1", play.db_id, now, played(play, now) }
  else
    -- Left open by an earlier run (or not recorded): it ended by its last saved position.
    close = { "UPDATE daz_mediatracker_plays SET ended_at = greatest(started_at, least(to_timestamp($2), " ..
              "started_at + make_interval(secs => played_s))) WHERE channel = $1 AND ended_at IS NULL", room, now }
  end
  local res, err = db:batch({
    close,
    { [[INSERT INTO daz_mediatracker_plays (channel, media_type, media_id, title, duration_s, uid, queued_by,
          started_at, played_s)
        VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8), $9) RETURNING id]],
      room, kind, id, new.title, seconds, new.uid, new.queueby, new.started, new.position },
    { [[INSERT INTO daz_mediatracker_media (media_type, media_id, title, duration_s, first_played, last_played,
          play_count)
        VALUES ($1, $2, $3, $4, to_timestamp($5), to_timestamp($5), 1)
        ON CONFLICT (media_type, media_id) DO UPDATE SET title = EXCLUDED.title,
          duration_s = EXCLUDED.duration_s, last_played = EXCLUDED.last_played,
          play_count = daz_mediatracker_media.play_count + 1]], kind, id, new.title, seconds, new.started },
  })
  if self:check("record play", res, err) then
    new.db_id = res[2].rows[1].id
    self.stats.plays = self.stats.plays + 1
  end
  r.play = new
end

function P:queued_by(r, id)
  local it = r.current_uid and r.items[r.current_uid]
  if it and it.id == id then return it.queueby end
  for _, u in ipairs(r.order) do
    if r.items[u].id == id then return r.items[u].queueby end
  end
end

function P:on_update(ev)
  local d = ev.data
  local r = self.rooms[ev.room]
  local play = r and r.play
  if type(d) ~= "table" or not play then return end
  local now = daz.now()
  if num(d.currentTime) then play.position, play.position_at = math.max(d.currentTime, 0), now end
  if d.paused ~= nil then play.paused = d.paused == true end
  if play.db_id and now - play.saved_at >= POSITION_SAVE_S then
    play.saved_at = now
    local res, err = db:exec("UPDATE daz_mediatracker_plays SET played_s = $2, updated_at = now() WHERE id = $1",
      play.db_id, played(play, now))
    self:check("save position", res, err)
  end
end

-- ------------------------------------------------------------ commands

function P:np(cmd)
  local r = self.rooms[cmd.room]
  local play = r and r.play
  if not play then return "now playing: nothing" end
  local now = daz.now()
  local left
  if play.seconds > 0 then
    left = duration.format(play.seconds - played(play, now)) .. " left"
  else
    left = "live"
  end
  local by = play.queueby and (", queued by " .. play.queueby) or ""
  return ("now playing: %s [%s%s%s]"):format(play.title or play.id, left, play.paused and ", paused" or "", by)
end

function P:mediastats(cmd)
  local rows, err = db:query([[
    SELECT (SELECT count(*) FROM daz_mediatracker_plays WHERE channel = $1
              AND started_at >= date_trunc('day', now())) AS today,
           (SELECT count(*) FROM daz_mediatracker_plays WHERE channel = $1) AS total,
           (SELECT count(DISTINCT (media_type, media_id)) FROM daz_mediatracker_plays WHERE channel = $1) AS titles,
           (SELECT coalesce(sum(played_s), 0) FROM daz_mediatracker_plays WHERE channel = $1) AS seconds]], cmd.room)
  if not rows then return nil, "the database did not answer" end
  local top = db:query([[SELECT max(title) AS title, count(*) AS n FROM daz_mediatracker_plays WHERE channel = $1
    GROUP BY media_type, media_id ORDER BY n DESC, max(started_at) DESC LIMIT 3]], cmd.room) or {}
  local s = rows[1]
  local parts = {}
  for _, t in ipairs(top) do parts[#parts + 1] = ("%s (%d)"):format(t.title or "?", t.n) end
  return ("media stats: %d plays today, %d in all of %d titles, %s played%s"):format(
    s.today, s.total, s.titles, duration.format(s.seconds),
    #parts > 0 and ("; most played: " .. table.concat(parts, ", ")) or "")
end

function P:start()
  local bus = self.bus
  bus:subscribe("cytube.event.playlist", function(ev) self:on_playlist(ev) end)
  bus:subscribe("cytube.event.queue", function(ev) self:on_queue(ev) end)
  bus:subscribe("cytube.event.delete", function(ev) self:on_delete(ev) end)
  bus:subscribe("cytube.event.moveVideo", function(ev) self:on_move(ev) end)
  bus:subscribe("cytube.event.setTemp", function(ev) self:on_settemp(ev) end)
  bus:subscribe("cytube.event.setCurrent", function(ev)
    if num(ev.data) then self:room(ev.room).current_uid = ev.data end
  end)
  bus:subscribe("cytube.event.changeMedia", function(ev) self:on_change(ev) end)
  bus:subscribe("cytube.event.mediaUpdate", function(ev) self:on_update(ev) end)
  local cd = self.cfg.cooldown
  commands.register(bus, { plugin = P.name, name = "np", aliases = { "nowplaying" }, usage = "np",
    description = "what is playing, how long is left, who queued it", cooldown = cd },
    function(c) return self:np(c) end, daz.log)
  commands.register(bus, { plugin = P.name, name = "mediastats", usage = "mediastats",
    description = "plays today and in all, most played", cooldown = cd },
    function(c) return self:mediastats(c) end, daz.log)
end

function P:status()
  local s = { rooms = 0 }
  for _ in pairs(self.rooms) do s.rooms = s.rooms + 1 end
  for k, v in pairs(self.stats) do s[k] = v end
  return s
end

function P:config() return self.cfg end

return P
