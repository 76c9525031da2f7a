-- Configuration for the end-to-end benchmarks (bench/e2e.js, `make bench`).
-- It is the shipped config.lua (every default plugin and logger rule on, the
-- same bus buffer sizes) pointed at the test CyTube server; bench/e2e.js
-- sets the environment:
--   DAZ_BENCH_SERVER   the test server URL
--   DAZ_BENCH_CHANNEL  the channel (with DAZ_BENCH_ROOMS > 1: channel1..channelN)
--   DAZ_BENCH_ROOMS    rooms to join (default 1)
--   DAZ_BENCH_ADMINS   how many probe users lat0..latN-1 are bot admins (default 0)
-- plus DAZ_CORE__DATABASE__URL, DAZ_HEALTH__PORT, DAZ_SPOOL__DIR and, for the
-- start-up figure, DAZ_CORE__LOGIN_DELAY_MS.
local server = os.getenv("DAZ_BENCH_SERVER") or "http://127.0.0.1:1"
local channel = os.getenv("DAZ_BENCH_CHANNEL") or "benchroom"
local n = tonumber(os.getenv("DAZ_BENCH_ROOMS") or "1") or 1

local rooms = {}
for i = 1, n do
  rooms[i] = {
    channel = n == 1 and channel or (channel .. i),
    username = "dazbot",
    password = "dazbot-pass-1",   -- the test server's fixture account
  }
end

-- The latency probe's users are bot admins: with admins_exempt (the default)
-- they skip EventFilter's cooldowns and rate limits, so the benchmark
-- measures the reply path, not the limiter. Spam protection still applies
-- (the probe spreads its lines over many users). No default is changed.
local admins = {}
for i = 0, (tonumber(os.getenv("DAZ_BENCH_ADMINS") or "0") or 0) - 1 do
  admins[#admins + 1] = "lat" .. i
end

return {
  core = {
    server = server,
    rooms = rooms,
    -- The test server has no per-address connection limit: join 100 rooms
    -- without CyTube's pacing (burst 5, then one per 10 s).
    server_connect_burst = 1000,
    server_connect_interval_ms = 0,
  },
  -- As config.lua.
  event_bus = {
    buffer_sizes = { ["cytube.event"] = 5000, ["sql."] = 1000 },
  },
  health = { enabled = true, port = 8080, bind = "127.0.0.1" },
  log = { level = "info", format = "json" },
  plugin_dirs = { "lua/plugins" },
  plugins = {
    eventfilter = { admins = admins },
  },
}
