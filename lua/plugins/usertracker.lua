-- usertracker: who is in each channel and since when. Sessions (join and
-- leave times, rank, messages, AFK time) in daz_usertracker_sessions; last
-- seen, last message and AFK state per user in daz_usertracker_users.
-- Command `seen <user>`.
--
-- The bot's own reconnect does not end anyone's session: every user list
-- (userlist.start, addUser with from_userlist, userlist.end) is compared
-- with the open sessions; users still there keep theirs, users gone are
-- closed as 'absent' at the time the bot lost the room (or now).
local commands = require("commands")
local duration = require("duration")
local html = require("html")
local cut = require("text").cut

local S = require("core.schema")

local P = { name = "usertracker" }

P.settings = {
  cooldown = S.num { check = S.range(0) },                        -- s per (user, command) of `seen`
  flush_ms = S.int { default = 1000, check = S.range(10) },      -- chat counts are written this often
}

local MAX_MESSAGE = 500  -- bytes of the last message kept

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg
  self.listing = {}   -- room -> set of lower-case names in the user list being received
  self.lost_at = {}   -- room -> when the bot left the room (for sessions it could not see end)
  self.joined = {}    -- room -> the bot is in the room
  self.me = {}        -- room -> the bot's own name there (known once joined)
  self.pending, self.pending_n = {}, 0   -- chat not yet written, per room and user
  self.stats = { joins = 0, leaves = 0, reconciled = 0, messages = 0, db_errors = 0 }
  self.flush_ms = self.cfg.flush_ms
end

function P:save() return { pending = self.pending, pending_n = self.pending_n, me = self.me } end
function P:restore(state)
  self.pending, self.pending_n = state.pending or {}, state.pending_n or 0
  self.me = state.me or {}
end

local function valid_name(s)
  return type(s) == "string" and #s >= 1 and #s <= 40 and s:match("^[%w_%-]+$") ~= nil
end

function P:check(what, res, err)
  if err then
    self.stats.db_errors = self.stats.db_errors + 1
    daz.log.warn("%s: %s", what, tostring(err))
  end
  return res
end

function P:open(room, name, rank, t, from_list)
  local res, err = db:exec([[
    WITH s AS (
      INSERT INTO daz_usertracker_sessions (channel, username, rank, joined_at, last_activity_at, from_list)
      VALUES ($1, $2, $3, to_timestamp($4), to_timestamp($4), $5)
      ON CONFLICT (channel, lower(username)) WHERE left_at IS NULL DO NOTHING
      RETURNING id)
    INSERT INTO daz_usertracker_users (channel, name_key, username, rank, first_seen, last_seen, sessions)
    VALUES ($1, lower($2), $2, $3, to_timestamp($4), to_timestamp($4), (SELECT count(*) FROM s))
    ON CONFLICT (channel, name_key) DO UPDATE SET username = EXCLUDED.username, rank = EXCLUDED.rank,
      last_seen = greatest(daz_usertracker_users.last_seen, EXCLUDED.last_seen),
      sessions = daz_usertracker_users.sessions + EXCLUDED.sessions]], room, name, rank, t, from_list == true)
  self:check("open session", res, err)
end

-- Closes open sessions: of one user (name), or of everyone not in `present`.
local CLOSE_SET = [[
  left_at = greatest(joined_at, to_timestamp($2)), end_reason = $3,
  afk_seconds = afk_seconds + CASE WHEN afk_since IS NULL THEN 0
    ELSE greatest(0, extract(epoch FROM to_timestamp($2) - afk_since)) END,
  afk_since = NULL]]

function P:close(room, name, t)
  local res, err = db:batch({
    { "UPDATE daz_usertracker_sessions SET " .. CLOSE_SET ..
      " WHERE channel = $1 AND lower(username) = lower($4) AND left_at IS NULL", room, t, "left", name },
    { "UPDATE daz_usertracker_users SET last_seen = greatest(last_seen, to_timestamp($3)), afk = false " ..
      "WHERE channel = $1 AND name_key = lower($2)", room, name, t },
  })
  self:check("close session", res, err)
end

function P:reconcile(room, present)
  -- The list comes before the bot has logged in again: the bot itself is there.
  local state = rooms.get(room)
  local me = state and type(state.name) == "string" and state.name or self.me[room]
  if me then present[me:lower()] = true end
  local names = {}
  for n in pairs(present) do names[#names + 1] = n end
  local t = self.lost_at[room] or daz.now()
  local list = #names > 0 and require("cjson").encode(names) or "[]"
  local rows, err = db:query("UPDATE daz_usertracker_sessions SET " .. CLOSE_SET ..
    " WHERE channel = $1 AND left_at IS NULL" ..
    " AND lower(username) NOT IN (SELECT jsonb_array_elements_text($4::jsonb)) RETURNING username",
    room, t, "absent", list)
  if self:check("reconcile sessions", rows, err) then
    self.stats.reconciled = self.stats.reconciled + #rows
    for _, r in ipairs(rows) do
      db:exec("UPDATE daz_usertracker_users SET last_seen = greatest(last_seen, to_timestamp($3)), afk = false " ..
        "WHERE channel = $1 AND name_key = lower($2)", room, r.username, t)
    end
  end
  self.lost_at[room] = nil
end

-- Chat is the busy stream: messages are added up in memory per user and
-- written together every flush_ms (or sooner once MAX_PENDING users wait:
-- memory stays bounded at one entry per user), and always before a join,
-- leave, user list or AFK change is handled, so each message still counts
-- in the session that was open when it was said. The bound is well above a
-- busy channel's active users: each write upserts every user in it, so a low
-- bound turns a flood into one upsert per line.
local MAX_PENDING = 2000

function P:message(ev)
  local d = ev.data
  if ev.replayed or type(d) ~= "table" or not valid_name(d.username) or type(d.msg) ~= "string" then return end
  local t = tonumber(d.time) and d.time / 1000 or daz.now()
  local text = cut(html.to_text(d.msg:sub(1, 4 * MAX_MESSAGE)), MAX_MESSAGE)
  self.stats.messages = self.stats.messages + 1
  local key = ev.room .. "\0" .. d.username:lower()
  local m = self.pending[key]
  if not m then
    m = { room = ev.room, name = d.username, count = 0, t = t, text = text }
    self.pending[key] = m
    self.pending_n = self.pending_n + 1
  end
  m.count = m.count + 1
  if t >= m.t then m.t, m.text = t, text end
  if self.pending_n >= MAX_PENDING and not self.flush_asked and daz.now() - (self.failed_at or 0) > 5 then
    -- Never wait here: chat keeps flowing while a concurrent task writes.
    self.flush_asked = true
    self.bus:publish("usertracker.flush")
  end
end

local RECORDS = "jsonb_to_recordset($1::jsonb) AS x(room text, name text, t float8, text text, count int)"

-- One write at a time, rows in key order (the ORDER BY): two writes of
-- overlapping users would lock the same rows in different orders, deadlock,
-- and hold pool connections while PostgreSQL sorts it out (a flood once kept
-- all of them busy that way). A write asked for while one runs (the timer, the size
-- trigger) just makes the running one go again; the ordered handlers (join,
-- leave, AFK, user list) wait for it, so every message is written before the
-- session it belongs to changes.
local FLUSH_WAIT_MS = 2

function P:flush(ordered)
  self.flush_asked = false
  if self.flushing then
    if not ordered then
      self.flush_again = true
      return
    end
    while self.flushing do daz.sleep(FLUSH_WAIT_MS) end
  end
  self.flushing = true
  local ok, err = pcall(function()
    repeat
      self.flush_again = false
      self:write_pending()
    until not self.flush_again
  end)
  self.flushing = false
  if not ok then error(err, 0) end
end

-- Users per statement: each chunk is encoded and sent on its own, so the
-- loop is never held for long (a 1,000-user write in one piece stalled
-- replies by several milliseconds) and waiting for the database between
-- chunks lets everything else run.
local WRITE_CHUNK = 200

function P:write_pending()
  if self.pending_n == 0 then return end
  local pending = self.pending
  self.pending, self.pending_n = {}, 0
  local chunk = {}
  for _, m in pairs(pending) do
    chunk[#chunk + 1] = m
    if #chunk == WRITE_CHUNK then
      self:write_chunk(chunk)
      chunk = {}
    end
  end
  if #chunk > 0 then self:write_chunk(chunk) end
end

function P:write_chunk(rows)
  local json = require("cjson").encode(rows)
  local res, err = db:batch({
    { [[INSERT INTO daz_usertracker_users (channel, name_key, username, first_seen, last_seen,
          last_message, last_message_at, messages)
        SELECT x.room, lower(x.name), x.name, to_timestamp(x.t), to_timestamp(x.t), x.text, to_timestamp(x.t), x.count
        FROM ]] .. RECORDS .. [[ ORDER BY x.room, lower(x.name)
        ON CONFLICT (channel, name_key) DO UPDATE SET
          last_message = CASE WHEN daz_usertracker_users.last_message_at > EXCLUDED.last_message_at
            THEN daz_usertracker_users.last_message ELSE EXCLUDED.last_message END,
          last_message_at = greatest(daz_usertracker_users.last_message_at, EXCLUDED.last_message_at),
          messages = daz_usertracker_users.messages + EXCLUDED.messages,
          last_seen = greatest(daz_usertracker_users.last_seen, EXCLUDED.last_seen), afk = false]], json },
    { [[UPDATE daz_usertracker_sessions s SET messages = s.messages + x.count,
          last_activity_at = greatest(s.last_activity_at, to_timestamp(x.t))
        FROM ]] .. RECORDS .. [[
        WHERE s.channel = x.room AND lower(s.username) = lower(x.name) AND s.left_at IS NULL]], json },
  })
  if not self:check("record messages", res, err) then
    -- Keep the counts for the next flush (bounded: one entry per user).
    self.failed_at = daz.now()
    for _, m in ipairs(rows) do
      local key = m.room .. "\0" .. m.name:lower()
      local cur = self.pending[key]
      if cur then
        cur.count = cur.count + m.count
        if m.t > cur.t then cur.t, cur.text = m.t, m.text end
      else
        self.pending[key] = m
        self.pending_n = self.pending_n + 1
      end
    end
  end
end

function P:afk(room, name, afk, t)
  local sql = afk
    and "UPDATE daz_usertracker_sessions SET afk_since = coalesce(afk_since, to_timestamp($3)) " ..
        "WHERE channel = $1 AND lower(username) = lower($2) AND left_at IS NULL"
    or "UPDATE daz_usertracker_sessions SET afk_seconds = afk_seconds + CASE WHEN afk_since IS NULL THEN 0 " ..
       "ELSE greatest(0, extract(epoch FROM to_timestamp($3) - afk_since)) END, afk_since = NULL, " ..
       "last_activity_at = to_timestamp($3) " ..
       "WHERE channel = $1 AND lower(username) = lower($2) AND left_at IS NULL"
  local res, err = db:batch({
    { sql, room, name, t },
    { "UPDATE daz_usertracker_users SET afk = $3 WHERE channel = $1 AND name_key = lower($2)", room, name, afk },
  })
  self:check("afk", res, err)
end

-- `seen <user>`: here now, or when last seen, and the last message.
function P:seen(cmd)
  local who = cmd.args[1]
  if not who then return nil, "usage: seen <user>" end
  if not valid_name(who) then return "seen: that is not a user name" end
  local rows, err = db:query([[
    SELECT u.username, u.last_seen, u.last_message_at, s.joined_at, s.afk_since
    FROM daz_usertracker_users u
    LEFT JOIN daz_usertracker_sessions s
      ON s.channel = u.channel AND lower(s.username) = u.name_key AND s.left_at IS NULL
    WHERE u.channel = $1 AND u.name_key = lower($2)]], cmd.room, who)
  if not rows then return nil, "the database did not answer" end
  local r = rows[1]
  if not r then return ("seen: I have not seen %s here"):format(who) end
  local now = daz.now()
  local pending = self.pending[cmd.room .. "\0" .. who:lower()]   -- said, not written yet
  if pending and (type(r.last_message_at) ~= "number" or pending.t > r.last_message_at) then
    r.last_message_at = pending.t
  end
  local function ago(t) return duration.format(now - t) .. " ago" end
  local said = type(r.last_message_at) == "number" and (", last message " .. ago(r.last_message_at)) or ""
  if type(r.joined_at) == "number" then
    local afk = type(r.afk_since) == "number" and (", AFK for " .. duration.format(now - r.afk_since)) or ""
    return ("seen: %s is here (joined %s%s%s)"):format(r.username, ago(r.joined_at), said, afk)
  end
  return ("seen: %s was last seen %s%s"):format(r.username, ago(r.last_seen), said)
end

function P:start()
  local bus = self.bus
  -- The periodic write runs in its own task too, so a slow database never
  -- holds back the chat handler (joins and leaves still flush in order).
  bus:subscribe("usertracker.flush", function() self:flush() end, { concurrent = true })
  bus:every(self.flush_ms, function() bus:publish("usertracker.flush") end)
  bus:subscribe("cytube.event.userlist.start", function(ev) self.listing[ev.room] = {} end)
  bus:subscribe("cytube.event.addUser", function(ev)
    local d = ev.data
    if type(d) ~= "table" or not valid_name(d.name) then return end
    self:flush(true)
    if d.from_userlist and self.listing[ev.room] then self.listing[ev.room][d.name:lower()] = true end
    if not d.from_userlist then self.stats.joins = self.stats.joins + 1 end
    self:open(ev.room, d.name, tonumber(d.rank), daz.now(), d.from_userlist)
    if type(d.meta) == "table" and d.meta.afk == true then self:afk(ev.room, d.name, true, daz.now()) end
  end)
  bus:subscribe("cytube.event.userlist.end", function(ev)
    local present = self.listing[ev.room]
    self.listing[ev.room] = nil
    self:flush(true)
    if present then self:reconcile(ev.room, present) end
  end)
  bus:subscribe("cytube.event.userLeave", function(ev)
    if type(ev.data) ~= "table" or not valid_name(ev.data.name) then return end
    self.stats.leaves = self.stats.leaves + 1
    self:flush(true)
    self:close(ev.room, ev.data.name, daz.now())
  end)
  -- In order with joins and leaves: a message counts in the session its join opened.
  bus:subscribe("cytube.event.chatMsg", function(ev) self:message(ev) end)
  bus:subscribe("cytube.event.setAFK", function(ev)
    local d = ev.data
    if type(d) ~= "table" or not valid_name(d.name) then return end
    self:flush(true)
    self:afk(ev.room, d.name, d.afk == true, daz.now())
  end)
  bus:subscribe("cytube.event.setUserRank", function(ev)
    local d = ev.data
    if type(d) ~= "table" or not valid_name(d.name) or not tonumber(d.rank) then return end
    db:batch({
      { "UPDATE daz_usertracker_users SET rank = $3 WHERE channel = $1 AND name_key = lower($2)",
        ev.room, d.name, tonumber(d.rank) },
      { "UPDATE daz_usertracker_sessions SET rank = $3 WHERE channel = $1 AND lower(username) = lower($2) " ..
        "AND left_at IS NULL", ev.room, d.name, tonumber(d.rank) },
    })
  end)
  -- Remember when the bot lost a room: sessions it finds gone ended then.
  bus:subscribe("cytube.room.status", function(ev)
    local d = ev.data
    if type(d) ~= "table" or type(d.channel) ~= "string" then return end
    if d.state == "joined" then
      self.joined[d.channel] = true
      local state = rooms.get(d.channel)
      if state and type(state.name) == "string" then self.me[d.channel] = state.name end
    elseif self.joined[d.channel] then
      self.joined[d.channel] = nil
      self.lost_at[d.channel] = daz.now()
    end
  end)
  commands.register(bus, { plugin = P.name, name = "seen", aliases = { "lastseen" }, usage = "seen <user>",
    description = "when a user was last here", cooldown = self.cfg.cooldown },
    function(c) return self:seen(c) end, daz.log)
end

function P:status() return self.stats end
function P:config() return self.cfg end

return P
