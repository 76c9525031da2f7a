-- Configuration for the HTTP benchmark (bench/http_bench.sh): only the bench
-- plugin, the loopback test server allowed, 100 requests in flight.
return {
  plugin_dirs = { "bench/http_plugins" },
  health = { enabled = false },
  log = { format = "json" },
  http = {
    allow_private = { "127.0.0.1:" .. os.getenv("DAZ_BENCH_HTTP_PORT") },
    max_in_flight = 100, max_in_flight_per_plugin = 100,
  },
}
