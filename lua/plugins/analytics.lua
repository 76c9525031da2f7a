-- analytics: hourly and daily figures per channel (messages, unique
-- chatters, joins, media plays, peak and average users) and messages per
-- user and day, in daz_analytics_*. Commands `stats` and `top`.
--
-- Incremental and idempotent: every `interval` seconds the buckets from the
-- last run (less one hour, for rows written late) up to now are computed
-- again from the logs — daz_chat_log (deduplicated by the SQL plugin, so the
-- chat CyTube replays on join is stored once), daz_usertracker_sessions
-- (joins seen live) and daz_mediatracker_plays — and upserted whole. A
-- restart or a replay therefore cannot count anything twice. Users present
-- are sampled per minute into daz_analytics_user_samples.
local commands = require("commands")

local S = require("core.schema")

local P = { name = "analytics" }

P.settings = {
  interval = S.num { default = 60, check = S.positive },         -- s between two aggregation runs
  sample_interval = S.num { default = 60, check = S.positive },  -- s between two user-count samples
  top_days = S.num { default = 7, check = S.positive },          -- days `top` looks back
  top_count = S.num { default = 5, check = S.positive },         -- chatters `top` names
  sample_days = S.num { default = 30, check = S.positive },      -- days user-count samples are kept (the aggregates stay)
  cooldown = S.num { check = S.range(0) },                       -- s per (user, command); absent: EventFilter's default
}

function P:init(bus, cfg)
  self.bus = bus
  self.cfg = cfg
  self.from = {}   -- channel -> epoch seconds the next run starts from
  self.busy = {}   -- channel -> a run is going on
  self.stats = { runs = 0, samples = 0, db_errors = 0 }
end

function P:save() return { from = self.from } end
function P:restore(state) self.from = state.from or {} end

function P:check(what, res, err)
  if err then
    self.stats.db_errors = self.stats.db_errors + 1
    daz.log.warn("%s: %s", what, tostring(err))
  end
  return res
end

local function own_name(room)
  local st = rooms.get(room)
  return st and type(st.name) == "string" and st.name:lower() or ""
end

-- Counted chat: not the server's notices, not the bot itself.
local CHAT = "c.channel = $1 AND c.username NOT LIKE '[%' AND lower(c.username) <> $3"

local HOURLY = ([[
  INSERT INTO daz_analytics_hourly AS a (channel, hour, messages, unique_chatters, joins, media_plays,
    peak_users, avg_users, updated_at)
  SELECT $1, g.h,
    (SELECT count(*) FROM daz_chat_log c WHERE %s
       AND c.message_time >= g.h AND c.message_time < g.h + interval '1 hour'),
    (SELECT count(DISTINCT lower(c.username)) FROM daz_chat_log c WHERE %s
       AND c.message_time >= g.h AND c.message_time < g.h + interval '1 hour'),
    (SELECT count(*) FROM daz_usertracker_sessions s WHERE s.channel = $1 AND NOT s.from_list
       AND lower(s.username) <> $3 AND s.joined_at >= g.h AND s.joined_at < g.h + interval '1 hour'),
    (SELECT count(*) FROM daz_mediatracker_plays p WHERE p.channel = $1
       AND p.started_at >= g.h AND p.started_at < g.h + interval '1 hour'),
    (SELECT coalesce(max(users), 0) FROM daz_analytics_user_samples u WHERE u.channel = $1
       AND u.sample_time >= g.h AND u.sample_time < g.h + interval '1 hour'),
    (SELECT coalesce(avg(users), 0) FROM daz_analytics_user_samples u WHERE u.channel = $1
       AND u.sample_time >= g.h AND u.sample_time < g.h + interval '1 hour'),
    now()
  FROM generate_series(date_trunc('hour', to_timestamp($2)), now(), interval '1 hour') AS g(h)
  ON CONFLICT (channel, hour) DO UPDATE SET messages = EXCLUDED.messages,
    unique_chatters = EXCLUDED.unique_chatters, joins = EXCLUDED.joins, media_plays = EXCLUDED.media_plays,
    peak_users = EXCLUDED.peak_users, avg_users = EXCLUDED.avg_users, updated_at = now()]]):format(CHAT, CHAT)

-- Days are UTC days.
local DAILY = ([[
  INSERT INTO daz_analytics_daily (channel, day, messages, unique_chatters, joins, media_plays,
    peak_users, avg_users, updated_at)
  SELECT $1, g.d::date,
    (SELECT count(*) FROM daz_chat_log c WHERE %s
       AND c.message_time >= (g.d AT TIME ZONE 'UTC') AND c.message_time < ((g.d + interval '1 day') AT TIME ZONE 'UTC')),
    (SELECT count(DISTINCT lower(c.username)) FROM daz_chat_log c WHERE %s
       AND c.message_time >= (g.d AT TIME ZONE 'UTC') AND c.message_time < ((g.d + interval '1 day') AT TIME ZONE 'UTC')),
    (SELECT count(*) FROM daz_usertracker_sessions s WHERE s.channel = $1 AND NOT s.from_list
       AND lower(s.username) <> $3
       AND s.joined_at >= (g.d AT TIME ZONE 'UTC') AND s.joined_at < ((g.d + interval '1 day') AT TIME ZONE 'UTC')),
    (SELECT count(*) FROM daz_mediatracker_plays p WHERE p.channel = $1
       AND p.started_at >= (g.d AT TIME ZONE 'UTC') AND p.started_at < ((g.d + interval '1 day') AT TIME ZONE 'UTC')),
    (SELECT coalesce(max(users), 0) FROM daz_analytics_user_samples u WHERE u.channel = $1
       AND u.sample_time >= (g.d AT TIME ZONE 'UTC') AND u.sample_time < ((g.d + interval '1 day') AT TIME ZONE 'UTC')),
    (SELECT coalesce(avg(users), 0) FROM daz_analytics_user_samples u WHERE u.channel = $1
       AND u.sample_time >= (g.d AT TIME ZONE 'UTC') AND u.sample_time < ((g.d + interval '1 day') AT TIME ZONE 'UTC')),
    now()
  FROM generate_series((to_timestamp($2) AT TIME ZONE 'UTC')::date::timestamp,
                       (now() AT TIME ZONE 'UTC')::date::timestamp, interval '1 day') AS g(d)
  ON CONFLICT (channel, day) DO UPDATE SET messages = EXCLUDED.messages,
    unique_chatters = EXCLUDED.unique_chatters, joins = EXCLUDED.joins, media_plays = EXCLUDED.media_plays,
    peak_users = EXCLUDED.peak_users, avg_users = EXCLUDED.avg_users, updated_at = now()]]):format(CHAT, CHAT)

local USER_DAILY = ([[
  INSERT INTO daz_analytics_user_daily (channel, day, username, messages)
  SELECT $1, (c.message_time AT TIME ZONE 'UTC')::date, lower(c.username), count(*)
  FROM daz_chat_log c
  WHERE %s AND c.message_time >= ((to_timestamp($2) AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC')
  GROUP BY 2, 3
  ON CONFLICT (channel, day, username) DO UPDATE SET messages = EXCLUDED.messages]]):format(CHAT)

-- Recompute the buckets of one channel from its watermark up to now. One
-- run per channel at a time (a command and the timer would otherwise upsert
-- the same rows in two transactions, and could deadlock).
function P:aggregate(room)
  local waited = 0
  while self.busy[room] and waited < 30000 do
    daz.sleep(20)
    waited = waited + 20
  end
  self.busy[room] = true
  local ok, res = pcall(self.aggregate_now, self, room)
  self.busy[room] = nil
  if not ok then error(res, 0) end
  return res
end

function P:aggregate_now(room)
  local from = self.from[room]
  if not from then
    local rows, err = db:query([[
      SELECT extract(epoch FROM coalesce(
        (SELECT max(hour) FROM daz_analytics_hourly WHERE channel = $1) - interval '1 hour',
        (SELECT min(message_time) FROM daz_chat_log WHERE channel = $1),
        now())) AS t]], room)
    if not self:check("watermark of " .. room, rows, err) then return end
    from = rows[1].t
  end
  local started = daz.now()
  local me = own_name(room)
  local res, err = db:batch({ { HOURLY, room, from, me }, { DAILY, room, from, me }, { USER_DAILY, room, from, me } })
  if self:check("aggregate " .. room, res, err) then
    self.from[room] = started - 3600   -- rows written late still land in a recomputed bucket
    self.stats.runs = self.stats.runs + 1
    return true
  end
end

function P:sample(room)
  local st = rooms.get(room)
  if not st or not st.joined then return end
  local n = 0
  for _ in pairs(type(st.users) == "table" and st.users or {}) do n = n + 1 end
  local res, err = db:exec([[
    INSERT INTO daz_analytics_user_samples (channel, sample_time, users)
    VALUES ($1, date_trunc('minute', now()), $2)
    ON CONFLICT (channel, sample_time) DO UPDATE
      SET users = greatest(daz_analytics_user_samples.users, EXCLUDED.users)]], room, n)
  if self:check("sample " .. room, res, err) then self.stats.samples = self.stats.samples + 1 end
end

function P:stats_text(cmd)
  self:aggregate(cmd.room)
  local st = rooms.get(cmd.room)
  local now_users = 0
  for _ in pairs(st and type(st.users) == "table" and st.users or {}) do now_users = now_users + 1 end
  local rows, err = db:query([[
    SELECT messages, unique_chatters, joins, media_plays, peak_users, avg_users FROM daz_analytics_daily
    WHERE channel = $1 AND day = (now() AT TIME ZONE 'UTC')::date]], cmd.room)
  if not rows then return nil, "the database did not answer" end
  local d = rows[1] or { messages = 0, unique_chatters = 0, joins = 0, media_plays = 0, peak_users = 0, avg_users = 0 }
  return ("stats today: %d messages from %d chatters, %d joins, %d plays; %d users now, peak %d, average %.1f"):format(
    d.messages, d.unique_chatters, d.joins, d.media_plays, now_users, math.max(d.peak_users, now_users), d.avg_users)
end

function P:top_text(cmd)
  self:aggregate(cmd.room)
  local rows, err = db:query([[
    SELECT username, sum(messages) AS n FROM daz_analytics_user_daily
    WHERE channel = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
    GROUP BY username ORDER BY n DESC, username LIMIT $3]], cmd.room, math.floor(self.cfg.top_days),
    math.floor(self.cfg.top_count))
  if not rows then return nil, "the database did not answer" end
  if #rows == 0 then return ("top chatters (%dd): nobody yet"):format(self.cfg.top_days) end
  local parts = {}
  for _, r in ipairs(rows) do parts[#parts + 1] = ("%s %d"):format(r.username, r.n) end
  return ("top chatters (%dd): %s"):format(self.cfg.top_days, table.concat(parts, ", "))
end

function P:start()
  local bus = self.bus
  bus:every(math.max(1, math.floor(self.cfg.interval * 1000)), function()
    for _, room in ipairs(rooms.list()) do self:aggregate(room) end
  end)
  bus:every(math.max(1, math.floor(self.cfg.sample_interval * 1000)), function()
    for _, room in ipairs(rooms.list()) do self:sample(room) end
  end)
  bus:every(3600 * 1000, function()
    db:exec("DELETE FROM daz_analytics_user_samples WHERE sample_time < now() - make_interval(days => $1)",
      math.floor(self.cfg.sample_days))
  end)
  -- Changes of who is there are sampled at once, so short peaks count.
  local function on_change(ev) self:sample(ev.room) end
  bus:subscribe("cytube.event.userlist.end", on_change)
  bus:subscribe("cytube.event.userLeave", on_change)
  bus:subscribe("cytube.event.addUser", function(ev)
    if type(ev.data) == "table" and not ev.data.from_userlist then self:sample(ev.room) end
  end)
  local cd = self.cfg.cooldown
  commands.register(bus, { plugin = P.name, name = "stats", usage = "stats", cooldown = cd,
    description = "today's messages, chatters, joins, plays and users" },
    function(c) return self:stats_text(c) end, daz.log)
  commands.register(bus, { plugin = P.name, name = "top", usage = "top", cooldown = cd,
    description = "the most active chatters" }, function(c) return self:top_text(c) end, daz.log)
end

function P:status() return self.stats end
function P:config() return self.cfg end

return P
