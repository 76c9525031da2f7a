-- Configuration for the SQL plugin benchmark (bench/sql_bench.sh): only the
-- benchmark plugin; the database URL comes from DAZ_CORE__DATABASE__URL.
return {
  plugin_dirs = { "bench/sql_plugins" },
  core = { database = { pool_size = 4, flush_ms = 100, batch_size = 5000, max_buffered_rows = 400000 } },
  event_bus = { buffer_sizes = { ["log.request"] = 20000, ["sqlbench."] = 100 } },
  loggers = { chat = { enabled = false }, private_messages = { enabled = false },
              user_joins = { enabled = false }, user_leaves = { enabled = false } },
  plugin_host = { instruction_budget = 1000000000 },
  health = { enabled = false },
  log = { format = "json" },
}
