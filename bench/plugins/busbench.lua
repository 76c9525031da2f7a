-- Bus benchmark driver: measures, inside one bin/daz, events/s delivered to
-- one Lua subscriber, to ten Lua subscribers through a pattern, request/
-- response round trips/s between two plugins, and the baseline: plain
-- lua_pcall calls/s of a handler of the same shape. Prints one line
-- "BENCH <json>" and asks the process to stop.
local cjson = require("cjson")

local P = { name = "busbench", depends = { "benchsink", "benchecho" } }

local N = tonumber(os.getenv("DAZ_BENCH_EVENTS")) or 1000000
local BATCH = 10000
local ROUND_TRIPS = tonumber(os.getenv("DAZ_BENCH_ROUND_TRIPS")) or 100000

function P:init(bus) self.bus = bus end

-- Publish n events of `type` in batches, waiting for the sink to catch up
-- after each batch so queues stay bounded; returns events/s.
local function flood(bus, type, n)
  local t0 = daz.uptime()
  local sent = 0
  while sent < n do
    for _ = 1, math.min(BATCH, n - sent) do bus:publish(type) end
    sent = sent + BATCH
    assert(bus:request("bench.flush", nil, { timeout = 60000 }))
  end
  return n / (daz.uptime() - t0)
end

function P:start()
  self.bus:after(50, function()
    local r = {}
    -- Baseline: the same work as the sink's handler, called with lua_pcall.
    local count = 0
    local handler = function() count = count + 1 end
    local secs = daz._bench_pcall(handler, {}, N)
    r.pcall_calls_per_s = N / secs

    r.lua_one_events_per_s = flood(self.bus, "bench.one", N)
    local n10 = N // 10
    r.lua_pattern10_deliveries_per_s = flood(self.bus, "bench.p.x", n10) * 10

    local t0 = daz.uptime()
    for i = 1, ROUND_TRIPS do
      local v = self.bus:request("bench.echo", i, { timeout = 5000 })
      assert(v == i, "echo mismatch")
    end
    r.request_round_trips_per_s = ROUND_TRIPS / (daz.uptime() - t0)
    r.lua_vs_pcall_ratio = r.lua_one_events_per_s / r.pcall_calls_per_s
    daz.log.info("BENCH %s", cjson.encode(r))
  end)
end

return P
