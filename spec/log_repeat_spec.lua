-- Log lines that can repeat at event rate are rate-limited per plugin and
-- site: a handler that raises on every event logs its first errors in full
-- (with the traceback), then one summary line per interval with the exact
-- count of the rest; a full inbox, a full bus queue and rows the writer
-- rejects likewise. /metrics and the writer's counters stay exact.
local h = require("helpers")
local daz = require("daz")

local BURST = 10 -- lines in full per site (src/host/host.c ERRLOG_BURST)

-- Start daz with one plugin, a health port and a short summary interval.
local function start(name, source, extra)
  local dir = daz.plugin_dir({ [name] = source })
  local port = h.free_port()
  local p = daz.start({
    config = ("return { plugin_dirs = { %q }, health = { port = %d }, %s }"):format(dir, port, extra or ""),
    env = { DAZ_HEALTH__PORT = tostring(port), DAZ_LOG_REPEAT_INTERVAL_MS = "300" },
  })
  p.wait_log("ready")
  return p, ("http://127.0.0.1:%d/metrics"):format(port)
end

-- The value of sample name{<label>="<value>"} in /metrics (label: plugin).
local function metric(url, name, value, label)
  local _, body = h.http("GET", url)
  local v = body and body:match(name .. "{" .. (label or "plugin") .. '="' .. value:gsub("%p", "%%%0") .. '"} (%d+)')
  return v and tonumber(v)
end

-- The counts the summary lines matching pattern give, added up.
local function summed(p, pattern)
  local n, lines = 0, p.logs(pattern)
  for _, l in ipairs(lines) do
    n = n + tonumber((l.msg:match("^([%d,]+) more "):gsub(",", "")))
  end
  return n, lines
end

describe("repeated log lines", function()
  local p
  after_each(function()
    if p and p.running() then p.stop_clean() end
    p = nil
    h.cleanup_tmp()
  end)

  it("log a raising handler's first errors in full, then summaries with the exact count", function()
    local N = 5000
    local url
    p, url = start("barraise", [[
      local P = { name = "barraise" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:subscribe("flood", function(ev) error("boom " .. ev.data.i) end)
        self.bus:after(10, function() for i = 1, ]] .. N .. [[ do self.bus:publish("flood", { i = i }) end end)
      end
      return P ]], ("event_bus = { buffer_sizes = { flood = %d } }"):format(N))
    h.wait_until(function() return metric(url, "daz_plugin_errors_total", "barraise") == N end, 30,
      N .. " errors in /metrics")
    h.wait_until(function() return summed(p, "^[%d,]+ more errors like this in the last") == N - BURST end, 10,
      "summary lines adding up to " .. (N - BURST))
    local full = p.logs("^handler failed: .*boom")
    assert.equals(BURST, #full)
    for _, l in ipairs(full) do
      assert.truthy(l.msg:find("stack traceback", 1, true), "a full error carries its traceback")
    end
    local _, summaries = summed(p, "^[%d,]+ more errors like this in the last")
    assert.is_true(#summaries <= 30, #summaries .. " summary lines")
    assert.truthy(summaries[1].msg:find("barraise%.lua:%d+: boom %d+$"), summaries[1].msg)
    assert.is_nil(summaries[1].msg:find("traceback", 1, true), "a summary has no traceback")
    assert.is_true(#p.lines() < 100, #p.lines() .. " log lines for " .. N .. " errors")
    assert.equals(N, metric(url, "daz_plugin_errors_total", "barraise"), "the counter stays exact")
    assert.equals(0, p.stop_clean())
  end)

  it("say what is still counted when daz stops", function()
    local url
    p, url = start("raiser", [[
      local P = { name = "raiser" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:subscribe("flood", function() error("again") end)
        self.bus:after(10, function() for i = 1, 100 do self.bus:publish("flood", {}) end end)
      end
      return P ]])
    h.wait_until(function() return metric(url, "daz_plugin_errors_total", "raiser") == 100 end, 20, "100 errors")
    assert.equals(BURST, #p.logs("^handler failed: .*again"))
    assert.equals(0, p.stop_clean())
    -- the interval is 300 ms: the summary came by then or at the stop
    assert.equals(100 - BURST, (summed(p, "^[%d,]+ more errors like this in the last")))
  end)

  it("log a full inbox's drops in full a few times, then in summaries; the drop counter is exact", function()
    local url
    p, url = start("slow", [[
      local P = { name = "slow" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:subscribe("work", function(ev) if ev.data.i == 1 then daz.sleep(1500) end end)
        self.bus:after(10, function() for i = 1, 2000 do self.bus:publish("work", { i = i }) end end)
      end
      return P ]], "plugin_host = { inbox_size = 10 }, event_bus = { buffer_sizes = { work = 5000 } }")
    h.wait_until(function() return (metric(url, "daz_plugin_dropped_total", "slow") or 0) >= 1900 end, 20,
      "drops in /metrics")
    local dropped = metric(url, "daz_plugin_dropped_total", "slow")
    h.wait_until(function()
      return BURST + summed(p, "^[%d,]+ more deliveries dropped in the last") == dropped
    end, 10, "full lines and summaries adding up to " .. dropped)
    assert.equals(BURST, #p.logs("^inbox full %(10%): %d+ deliveries dropped so far"))
    assert.equals(0, p.stop_clean())
  end)

  it("log a full bus queue's drops in full a few times, then in summaries", function()
    local url
    p, url = start("spammer", [[
      local P = { name = "spammer" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:subscribe("spam", function() end)
        self.bus:after(10, function() for i = 1, 3000 do self.bus:publish("spam", { i = i }) end end)
      end
      return P ]], "event_bus = { buffer_sizes = { spam = 10 } }")
    h.wait_until(function() return metric(url, "daz_events_dropped_total", "spam", "type") == 2990 end, 20,
      "2990 drops in /metrics")
    h.wait_until(function()
      return BURST + summed(p, "^[%d,]+ more events dropped in the last .*queue of spam full") == 2990
    end, 10, "full lines and summaries adding up to 2990")
    assert.equals(BURST, #p.logs("^queue of spam full %(10%): dropped an event"))
    assert.equals(0, p.stop_clean())
  end)

  it("log rows the writer rejects in full a few times, then in summaries; its counters are exact", function()
    p = start("badrows", daz.RESULT_PRELUDE .. [[
      local P = { name = "badrows" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(10, function()
          for i = 1, 500 do self.bus:publish("log.request", { table = "daz_no_such_table", row = { i = i } }) end
          repeat daz.sleep(20) until db.stats().writer.rejected_unknown_table >= 500
          result("writer", db.stats().writer)
        end)
      end
      return P ]], 'event_bus = { buffer_sizes = { ["log.request"] = 1000 } }')
    local w = p.wait_result("writer", 30)
    assert.equals(500, w.rejected_unknown_table)
    assert.equals(500, w.rows_rejected)
    h.wait_until(function()
      return BURST + summed(p, "^[%d,]+ more like this in the last .*unknown table daz_no_such_table") == 500
    end, 10, "full lines and summaries adding up to 500")
    assert.equals(BURST, #p.logs("^row rejected: unknown table daz_no_such_table"))
    assert.equals(0, p.stop_clean())
  end)

  it("log refused room commands in full a few times, then in summaries", function()
    p = start("sender", [[
      local P = { name = "sender" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(10, function()
          for i = 1, 500 do self.bus:publish("cytube.send", { room = "nowhere", msg = "line " .. i }) end
        end)
      end
      return P ]], 'event_bus = { buffer_sizes = { ["cytube.send"] = 1000 } }')
    h.wait_until(function()
      return #p.logs("^cytube.send refused: ") + summed(p, "^[%d,]+ more like this in the last .*cytube.send refused") == 500
    end, 20, "full lines and summaries adding up to 500")
    assert.equals(BURST, #p.logs("^cytube.send refused: "))
    assert.equals(0, p.stop_clean())
  end)
end)
