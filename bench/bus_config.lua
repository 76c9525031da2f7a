-- Configuration for the bus benchmark (scripts/bench): only the bench plugins.
return {
  plugin_dirs = { "bench/plugins" },
  event_bus = { buffer_sizes = { ["bench."] = 20000 } },
  health = { enabled = false },
  log = { format = "json" },
}
