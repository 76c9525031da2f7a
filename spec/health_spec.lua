-- The health and metrics server, through the real bin/daz: endpoints,
-- status codes, JSON shapes, the exposition format, liveness of a blocked
-- loop, and that HTTP load never gets in the way of the bot.
local h = require("helpers")
local daz = require("daz")
local cjson = require("cjson")

local PRELUDE = daz.RESULT_PRELUDE

local counter_plugin = PRELUDE .. [[
  local P = { name = "counter" }
  function P:init(bus) self.bus = bus; self.n = 0 end
  function P:status() return { counted = self.n, note = "custom field" } end
  function P:start()
    self.bus:subscribe("tick", function() self.n = self.n + 1 end)
    self.bus:subscribe("burst", function(ev)
      for i = 1, ev.data.n do self.bus:publish("tick", { i = i }) end
    end)
    self.bus:subscribe("count?", function(ev) ev:respond(self.n) end, { concurrent = true })
  end
  return P ]]

-- Start daz with plugins and a health port; returns process, base URL.
local function start(plugins, extra)
  local dir = daz.plugin_dir(plugins)
  local port = h.free_port()
  local p = daz.start({
    config = ("return { plugin_dirs = { %q }, health = { port = %d, refresh_ms = 100, live_timeout_ms = 800 }, %s }")
      :format(dir, port, extra or ""),
    env = { DAZ_HEALTH__PORT = tostring(port) },
  })
  p.wait_log("ready")
  return p, ("http://127.0.0.1:%d"):format(port), port
end

-- A tiny Prometheus text-format parser: returns { [name] = { {labels, value} } }
-- and raises on any line that is not valid exposition.
local function parse_exposition(text)
  local families, samples = {}, {}
  for line in text:gmatch("[^\n]+") do
    local kind, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) (.*)$")
    if kind then
      assert(kind == "HELP" or kind == "TYPE", "bad comment: " .. line)
      if kind == "TYPE" then
        assert(({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[rest], "bad type: " .. line)
        families[name] = rest
      end
    else
      local sname, labels, value = line:match("^([%a_:][%w_:]*)(%b{})%s+(%S+)$")
      if not sname then
        sname, value = line:match("^([%a_:][%w_:]*)%s+(%S+)$")
        labels = ""
      end
      assert(sname, "bad sample line: " .. line)
      assert(tonumber(value) or value == "+Inf" or value == "NaN", "bad value: " .. line)
      local family = families[sname] and sname or sname:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
      assert(families[family], "sample without a TYPE line: " .. line)
      samples[sname] = samples[sname] or {}
      table.insert(samples[sname], { labels = labels, value = tonumber(value) })
    end
  end
  return samples, families
end

local function metric(samples, name, label_match)
  for _, s in ipairs(samples[name] or {}) do
    if not label_match or s.labels:find(label_match, 1, true) then return s.value end
  end
end

describe("health server", function()
  local p
  after_each(function()
    if p and p.running() then p.stop_clean() end
    p = nil
    h.cleanup_tmp()
  end)

  it("serves /health with status, version, uptime and every component", function()
    local base
    p, base = start({ counter = counter_plugin })
    local doc = h.wait_until(function()
      local status, body = h.http("GET", base .. "/health")
      local d = status == 200 and cjson.decode(body)
      return d and d.components.plugins.counter and d
    end, 10, "/health with the plugin")
    assert.equals("up", doc.status)
    assert.truthy(doc.version:match("^%d+%.%d+%.%d+$"))
    assert.is_number(doc.uptime_seconds)
    assert.is_table(doc.components.bus.types)
    local c = doc.components.plugins.counter
    assert.equals("started", c.state)
    assert.equals(0, c.errors)
    assert.equals("custom field", c.custom.note)
    local status, body = h.http("GET", base .. "/health/ready")
    assert.equals(200, status, body)
    assert.is_true(cjson.decode(body).ready)
  end)

  it("answers 404 for unknown paths, 405 for other methods, and HEAD like GET", function()
    local base
    p, base = start({})
    assert.equals(404, (h.http("GET", base .. "/nope")))
    assert.equals(405, (h.http("POST", base .. "/health", "-d x=1")))
    assert.equals(405, (h.http("DELETE", base .. "/metrics")))
    local _, _, out = h.sh("curl -s -I -m 5 " .. base .. "/health/live")
    assert.truthy(out:match("^HTTP/1.1 200"), out)
  end)

  it("serves valid Prometheus exposition whose counters move as events flow", function()
    local base
    p, base = start({ counter = counter_plugin }, [[event_bus = { buffer_sizes = { tick = 100 } }]])
    local status, body = h.http("GET", base .. "/metrics")
    assert.equals(200, status)
    local _, _, head = h.sh("curl -s -i -m 5 " .. base .. "/metrics")
    assert.truthy(head:find("Content-Type: text/plain; version=0.0.4", 1, true), head)
    local samples = parse_exposition(body)
    for _, name in ipairs({ "daz_uptime_seconds", "process_resident_memory_bytes", "process_open_fds" }) do
      assert.is_number(metric(samples, name), name)
    end
    -- A burst of 150 ticks into a queue of 100: 50 are dropped.
    p.stop_clean()
    local port = base:match(":(%d+)$")
    local dir = daz.plugin_dir({ counter = counter_plugin, trigger = [[
      local P = { name = "trigger" }
      function P:init(bus) bus:after(300, function() bus:publish("burst", { n = 150 }) end) end
      return P ]] })
    p = daz.start({ config = ("return { plugin_dirs = { %q }, health = { port = %s, refresh_ms = 100 }, event_bus = { buffer_sizes = { tick = 100 } } }")
      :format(dir, port), env = { DAZ_HEALTH__PORT = port } })
    p.wait_log("ready")
    samples = h.wait_until(function()
      local st, b = h.http("GET", base .. "/metrics")
      local s = st == 200 and parse_exposition(b)
      return s and (metric(s, "daz_events_processed_total", 'type="tick"') or 0) >= 100 and s
    end, 10, "tick events in /metrics")
    assert.equals(100, metric(samples, "daz_events_received_total", 'type="tick"'))
    assert.equals(50, metric(samples, "daz_events_dropped_total", 'type="tick"'))
    assert.equals(0, metric(samples, "daz_bus_queue_depth", 'type="tick"'))
    assert.is_true(metric(samples, "daz_plugin_handler_seconds_count", 'plugin="counter"') >= 101)
    assert.equals(0, metric(samples, "daz_plugin_errors_total", 'plugin="counter"'))
  end)

  it("reports degraded (still 200) when a plugin keeps failing", function()
    local base
    p, base = start({ bad = [[
      local P = { name = "bad" }
      function P:init(bus) bus:every(20, function() error("broken on purpose") end) end
      return P ]] }, "plugin_host = { degraded_after_errors = 3 }")
    local doc = h.wait_until(function()
      local status, body = h.http("GET", base .. "/health")
      local d = status == 200 and cjson.decode(body)
      return d and d.status == "degraded" and d
    end, 10, "degraded status")
    assert.truthy(table.concat(doc.problems, "; "):find("plugin bad is degraded", 1, true))
    assert.truthy(doc.components.plugins.bad.last_error:find("broken on purpose", 1, true))
  end)

  it("fails /health/live while the loop is blocked, and recovers", function()
    local base
    p, base = start({ blocker = [[
      local P = { name = "blocker" }
      function P:init(bus)
        bus:subscribe("block", function()
          local t = os.clock() + 2.5
          while os.clock() < t do end   -- a stuck loop, on purpose
        end)
        bus:after(500, function() bus:publish("block", {}) end)
      end
      return P ]] }, "plugin_host = { instruction_budget = 1000000000 }")
    h.wait_until(function() return (h.http("GET", base .. "/health/live")) == 503 end, 10, "/health/live to fail")
    local _, body = h.http("GET", base .. "/health/live")
    assert.truthy(body:find("stalled", 1, true), body)
    h.wait_until(function() return (h.http("GET", base .. "/health/live")) == 200 end, 10, "/health/live to recover")
  end)

  it("binds 127.0.0.1 by default, and a port in use is a clear startup error", function()
    local base, port
    p, base, port = start({})
    local _, _, ss = h.sh("ss -ltnH 'sport = :" .. port .. "'")
    assert.truthy(ss:find("127.0.0.1:" .. port, 1, true), ss)
    local p2 = daz.start({ config = ("return { health = { port = %d } }"):format(port),
      env = { DAZ_HEALTH__PORT = tostring(port) } })
    assert.equals(1, p2.wait_exit(10))
    assert.equals(1, #p2.logs("cannot listen on 127.0.0.1:" .. port .. ": Address already in use"), p2.output())
    assert.equals(200, (h.http("GET", base .. "/health/live")))
  end)

  it("serves 200 concurrent requests and slow clients while events flow, losing no event", function()
    local base
    p, base = start({ counter = counter_plugin, driver = PRELUDE .. [[
      local P = { name = "driver", depends = { "counter" } }
      function P:init(bus) self.bus = bus end
      function P:start()
        local sent = 0
        local t
        t = self.bus:every(5, function()
          for _ = 1, 50 do self.bus:publish("tick", {}) end
          sent = sent + 50
          if sent >= 5000 then
            t:cancel()
            local n = self.bus:request("count?", {}, { timeout = 5000 })
            result("flow", { sent = sent, counted = n })
          end
        end)
      end
      return P ]] }, [[event_bus = { buffer_sizes = { tick = 100000 } }]])
    -- Slow clients: connections that never finish their request.
    local _, _, slow = h.sh(("for i in 1 2 3 4 5; do (exec 3<>/dev/tcp/127.0.0.1/%s; printf 'GET /health HTTP/1.1\\r\\n' >&3; sleep 3) & done; echo started")
      :format(base:match(":(%d+)$")))
    assert.truthy(slow:find("started"))
    -- An oversized request is refused without harm.
    local big = string.rep("x", 64 * 1024)
    local st = h.http("GET", base .. "/health", "-H " .. h.shquote("X-Big: " .. big))
    assert.is_true(st >= 400 or st == 0, "oversized request got " .. tostring(st))
    -- 200 concurrent requests.
    local urls = {}
    for i = 1, 200 do urls[i] = base .. ({ "/health", "/metrics", "/health/live", "/health/ready" })[i % 4 + 1] end
    local _, _, codes = h.sh("printf '%s\\n' " .. table.concat(urls, " ") ..
      " | xargs -P 200 -n 1 curl -s -m 20 -o /dev/null -w '%{http_code}\\n'")
    local ok200 = 0
    for line in codes:gmatch("[^\n]+") do if line == "200" then ok200 = ok200 + 1 end end
    assert.equals(200, ok200, codes)
    local r = p.wait_result("flow", 30)
    assert.equals(5000, r.sent)
    assert.equals(5000, r.counted)
  end)
end)
