-- The SQL plugin benchmark (bench/sql_bench.sh): rows per second from
-- `log.request` publish to committed rows through the batch writer (COPY),
-- against one INSERT per row through the same pool (as many concurrent
-- writers as the pool has connections), in the same run. Reports one
-- "BENCH <json>" log line.
local cjson = require("cjson")

local P = { name = "sqlbench" }

local COPY_ROWS = tonumber(os.getenv("SQLBENCH_COPY_ROWS")) or 200000
local INSERT_ROWS = tonumber(os.getenv("SQLBENCH_INSERT_ROWS")) or 20000
local CHUNK = 1000 -- rows published per loop turn (the bus delivers between chunks)

function P:init(bus, config)
  self.bus = bus
  self.workers = db.stats().pool.size
end

local function count(channel)
  return db:query("SELECT count(*) AS n FROM daz_chat_log WHERE channel = $1", channel)[1].n
end

function P:start()
  local done = 0
  -- One per-row writer per pool connection.
  self.bus:subscribe("sqlbench.insert", function(ev)
    local first, last = ev.data.first, ev.data.last
    for i = first, last do
      local n, err = db:exec(
        "INSERT INTO daz_chat_log (channel, username, message, message_time) VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000))",
        "bench-insert", "user" .. (i % 50), "insert row " .. i, 1700000000000 + i)
      if not n then error(tostring(err)) end
    end
    done = done + 1
  end, { concurrent = true })

  self.bus:after(200, function()
    -- Batched: publish log.request rows, wait until the writer committed them all.
    local t0 = daz.uptime()
    local written0 = db.stats().writer.rows_written
    local full = 0
    for i = 1, COPY_ROWS do
      local row = { table = "daz_chat_log", row = {
        channel = "bench-copy", username = "user" .. (i % 50), message = "copy row " .. i,
        message_time = 1700000000000 + i } }
      -- A full queue refuses the event: let the bus deliver, then publish it again.
      while not self.bus:publish("log.request", row) do
        full = full + 1
        daz.sleep(1)
      end
      if i % CHUNK == 0 then daz.sleep(1) end
    end
    local publish_s = daz.uptime() - t0
    local last_report = daz.uptime()
    repeat
      daz.sleep(2)
      if daz.uptime() - last_report > 1 then
        last_report = daz.uptime()
        daz.log.debug("progress %s", cjson.encode(db.stats()))
      end
    until db.stats().writer.rows_written - written0 >= COPY_ROWS
    local copy_s = daz.uptime() - t0
    local copied = count("bench-copy")

    -- Baseline: one INSERT per row, concurrently on every connection.
    t0 = daz.uptime()
    local per = INSERT_ROWS // self.workers
    for w = 0, self.workers - 1 do
      self.bus:publish("sqlbench.insert", { first = w * per + 1, last = (w + 1) * per })
    end
    repeat daz.sleep(2) until done == self.workers
    local insert_s = daz.uptime() - t0
    local inserted = count("bench-insert")

    local w = db.stats().writer
    daz.log.info("BENCH %s", cjson.encode({
      copy_rows = COPY_ROWS, copy_committed = copied, copy_seconds = copy_s, publish_seconds = publish_s,
      copy_rows_per_s = COPY_ROWS / copy_s,
      insert_rows = per * self.workers, insert_committed = inserted, insert_seconds = insert_s,
      insert_rows_per_s = per * self.workers / insert_s,
      ratio = (COPY_ROWS / copy_s) / (per * self.workers / insert_s),
      batches = w.batches_written, rows_lost = w.rows_lost, rows_spooled = w.rows_spooled,
      pool_size = self.workers, queue_full_retries = full,
    }))
  end)
end

return P
