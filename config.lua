-- Daz configuration. This file is Lua: it returns one table. It runs in a
-- sandbox — os.getenv, string, table and math are available; io, os.execute
-- and require are not. Keep secrets out of this file: read them from the
-- environment as below.
--
-- Any setting can also be forced from the environment with
-- DAZ_<SECTION>__<KEY>=value ("__" between levels), e.g.
--   DAZ_HEALTH__PORT=9090  DAZ_LOG__LEVEL=debug  DAZ_CORE__DATABASE__URL=postgresql://...
-- and flags (-health-port, -verbose) win over both.
-- Check a file without starting anything: bin/daz -config config.lua -check-config

-- Join one channel when DAZ_CHANNEL is set. Without it daz runs but joins
-- no channel (and says so at start).
local channel = os.getenv("DAZ_CHANNEL")
if channel == "" then channel = nil end

return {
  core = {
    -- The CyTube server; a room may name its own.
    server = os.getenv("DAZ_SERVER") or "https://cytu.be",

    rooms = channel and {
      {
        channel = channel,
        username = os.getenv("DAZ_USERNAME") or "dazbot",
        password = os.getenv("DAZ_PASSWORD"),   -- nil: log in as a guest
        -- channel_password = os.getenv("DAZ_CHANNEL_PASSWORD"),
        enabled = true,
        reconnect_attempts = 10,                -- attempts per cycle (2 s .. 5 min backoff)
        cooldown_minutes = 2,                   -- pause between cycles
      },
    } or {},

    -- No database here: `make run` starts a private PostgreSQL under var/.
    -- A real server is one line away:
    -- database = { url = os.getenv("DAZ_DATABASE_URL") },
    -- database = { host = "localhost", port = 5432, database = "daz", user = "daz",
    --              password = os.getenv("DAZ_DB_PASSWORD"), pool_size = 4 },
  },

  -- Queue bound per event type (longest prefix wins); full queues drop and count.
  event_bus = {
    buffer_sizes = { ["cytube.event"] = 5000, ["sql."] = 1000 },
  },

  -- Health and metrics: /health, /health/live, /health/ready, /metrics.
  health = { enabled = true, port = 8080, bind = "127.0.0.1" },

  log = { level = "info", format = "auto" },   -- format: auto (text on a terminal, else JSON), text, json

  -- Where plugins are found; add your own folders.
  plugin_dirs = { "lua/plugins" },

  -- Per-plugin settings; enabled = false skips a plugin (its file is not even
  -- loaded). Each shipped plugin declares its settings: -check-config and the
  -- start refuse an unknown key or a wrong type (exit 2).
  -- The shipped plugins and their defaults (README "Plugins"):
  plugins = {
    -- eventfilter = {
    --   prefix = "!", admins = { "owner" }, admins_exempt = true,
    --   ignore_users = { "otherbot" },           -- other bots: their commands never run
    --   default_cooldown = 5,                    -- s per (user, command)
    --   user_limit = 5, user_window = 10,        -- commands per user per 10 s
    --   room_limit = 20, room_window = 10,       -- commands per room per 10 s
    --   spam_flood = 10, spam_repeat = 4, spam_window = 15, spam_ignore = 60,
    --   notice_interval = 10, command_timeout = 10000,
    --   max_args = 16, max_arg_len = 200, max_input = 1000, history = true, history_days = 90,
    -- },
    -- commands = { cooldown = 5 },               -- about, help, uptime, debug, reload
    -- usertracker = { cooldown = 5, flush_ms = 1000 },  -- seen; chat counts written every flush_ms
    -- mediatracker = { cooldown = 5 },           -- np, mediastats
    -- analytics = { interval = 60, sample_interval = 60, top_days = 7, top_count = 5, sample_days = 30 },
    -- retry = { poll_ms = 1000, policies = {       -- failed operations, retried with backoff
    --   default = { max_attempts = 5, base_ms = 5000, max_ms = 300000, multiplier = 2, jitter = 0.25, timeout_ms = 10000 },
    -- } },
    -- plugin_stats = { interval_ms = 60000 },     -- plugin performance into daz_plugin_stats
    -- links = { rooms = { "mychannel" },         -- say linked pages' titles, only in these rooms
    --   allow_domains = {}, deny_domains = {}, skip_media = true, window = 3600,
    --   room_limit = 5, room_seconds = 60, user_limit = 2, user_seconds = 60, max_urls = 2 },
    -- notify = { timeout_ms = 5000, hooks = {     -- webhooks (Discord or JSON) for room events
    --   discord = { url = "https://discord.com/api/webhooks/ID/TOKEN", format = "discord",
    --     events = { "now_playing", "kicked" }, keywords = {} },
    -- } },
  },
}
