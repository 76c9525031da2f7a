-- The EventBus and the Lua plugin host, through the real bin/daz: plugins
-- written to a temporary plugin_dirs folder report what they saw with log
-- lines "RESULT <key> <json>", which these specs read.
local h = require("helpers")
local daz = require("daz")

-- Start daz with the given plugins (name -> source) and extra config text.
local function run(plugins, extra_config, opts)
  opts = opts or {}
  local dir = daz.plugin_dir(plugins)
  local config = ("return { plugin_dirs = { %q }, %s }"):format(dir, extra_config or "")
  local p = daz.start({ config = config, args = opts.args, env = opts.env })
  p.plugin_dir = dir
  return p
end

local PRELUDE = daz.RESULT_PRELUDE

describe("plugin host", function()
  local p
  after_each(function()
    if p and p.running() then p.stop_clean() end
    p = nil
    h.cleanup_tmp()
  end)

  it("delivers highest priority first across types, FIFO within a priority", function()
    p = run({ order = PRELUDE .. [[
      local P = { name = "order" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local got = {}
        self.bus:subscribe("prio.*", function(ev)
          got[#got + 1] = ev.data.n
          if #got == 8 then result("order", got) end
        end)
        self.bus:after(10, function()
          -- published in one turn: the bus reorders them
          self.bus:publish("prio.a", { n = "a0-1" }, { priority = 0 })
          self.bus:publish("prio.b", { n = "b2-1" }, { priority = 2 })
          self.bus:publish("prio.a", { n = "a3-1" }, { priority = 3 })
          self.bus:publish("prio.b", { n = "b0-2" }, { priority = 0 })
          self.bus:publish("prio.a", { n = "a2-2" }, { priority = 2 })
          self.bus:publish("prio.b", { n = "b1-1" }, { priority = 1 })
          self.bus:publish("prio.a", { n = "a3-2" }, { priority = 3 })
          self.bus:publish("prio.b", { n = "b0-3" }, { priority = 0 })
        end)
      end
      return P ]] })
    local got = p.wait_result("order")
    assert.same({ "a3-1", "a3-2", "b2-1", "a2-2", "b1-1", "a0-1", "b0-2", "b0-3" }, got)
  end)

  it("drops when a queue is full, counts the drops, and sizes queues by longest prefix", function()
    p = run({ flood = PRELUDE .. [[
      local P = { name = "flood" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local n = 0
        self.bus:subscribe("flood.x", function() n = n + 1 end)
        self.bus:subscribe("flood.done", function()
          local s = daz.bus_stats()
          result("flood", { delivered = n, dropped = s["flood.x"].dropped, cap = s["flood.x"].capacity,
            cap_deep = s["flood.deep.y"].capacity, cap_default = s["other.z"].capacity,
            accepted = self.accepted })
        end)
        self.bus:after(10, function()
          local accepted = 0
          for i = 1, 20 do
            if self.bus:publish("flood.x", { i = i }) then accepted = accepted + 1 end
          end
          self.accepted = accepted
          self.bus:publish("flood.deep.y", {})
          self.bus:publish("other.z", {})
          self.bus:publish("flood.done", {})
        end)
      end
      return P ]] },
      [[event_bus = { buffer_sizes = { ["flood."] = 5, ["flood.deep."] = 7 }, default_buffer_size = 123 }]])
    local r = p.wait_result("flood")
    assert.equals(5, r.delivered)
    assert.equals(5, r.accepted)
    assert.equals(15, r.dropped)
    assert.equals(5, r.cap)
    assert.equals(7, r.cap_deep)
    assert.equals(123, r.cap_default)
  end)

  it("matches * patterns and tag filters", function()
    p = run({ pat = PRELUDE .. [[
      local P = { name = "pat" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local seen = { star = {}, failed = {}, tagged = {} }
        self.bus:subscribe("cytube.event.*", function(ev) table.insert(seen.star, ev.type) end)
        self.bus:subscribe("*.failed", function(ev) table.insert(seen.failed, ev.type) end)
        self.bus:subscribe("chat", function(ev) table.insert(seen.tagged, ev.room or "(no room)") end, { tags = { "room:r1" } })
        self.bus:subscribe("end", function() result("pat", seen) end)
        self.bus:after(10, function()
          self.bus:publish("cytube.event.chatMsg", {})
          self.bus:publish("cytube.event.user.join", {})
          self.bus:publish("cytube.send", {})
          self.bus:publish("sql.exec.failed", {})
          self.bus:publish("failed.not", {})
          self.bus:publish("chat", {}, { room = "r1" })
          self.bus:publish("chat", {}, { room = "r2" })
          self.bus:publish("chat", {}, { tags = { "room:r1" } })
          self.bus:publish("end", {})
        end)
      end
      return P ]] })
    local r = p.wait_result("pat")
    assert.same({ "cytube.event.chatMsg", "cytube.event.user.join" }, r.star)
    assert.same({ "sql.exec.failed" }, r.failed)
    assert.equals(2, #r.tagged)
    assert.same({ "r1", "(no room)" }, r.tagged)
  end)

  it("answers requests between plugins, fails fast with no responder, and times out", function()
    p = run({
      responder = PRELUDE .. [[
        local P = { name = "responder" }
        function P:init(bus) self.bus = bus end
        function P:start()
          self.bus:subscribe("svc.echo", function(ev) ev:respond({ echo = ev.data.v }) end)
          self.bus:subscribe("svc.fail", function(ev) ev:respond(nil, "nope") end)
          self.bus:subscribe("svc.slow", function(ev) end) -- never answers
        end
        return P ]],
      caller = PRELUDE .. [[
        local P = { name = "caller", depends = { "responder" } }
        function P:init(bus) self.bus = bus end
        function P:start()
          self.bus:after(10, function()
            local r = {}
            local v, err = self.bus:request("svc.echo", { v = "hi" }, { timeout = 1000 })
            r.echo, r.echo_err = v and v.echo, err
            v, err = self.bus:request("svc.fail", {}, { timeout = 1000 })
            r.fail_err = err
            local t0 = daz.uptime()
            v, err = self.bus:request("svc.nobody", {}, { timeout = 1000 })
            r.none_err, r.none_ms = err, (daz.uptime() - t0) * 1000
            t0 = daz.uptime()
            v, err = self.bus:request("svc.slow", {}, { timeout = 150 })
            r.slow_err, r.slow_ms = err, (daz.uptime() - t0) * 1000
            result("req", r)
          end)
        end
        return P ]],
    })
    local r = p.wait_result("req")
    assert.equals("hi", r.echo)
    assert.equals("nope", r.fail_err)
    assert.equals("no responder", r.none_err)
    assert.is_true(r.none_ms < 50, "no responder took " .. r.none_ms .. " ms")
    assert.equals("timeout", r.slow_err)
    assert.is_true(r.slow_ms >= 140 and r.slow_ms < 1000, "timeout after " .. r.slow_ms .. " ms")
  end)

  it("keeps a plugin whose handler raises away from the others", function()
    p = run({
      bad = [[
        local P = { name = "bad" }
        function P:init(bus) self.bus = bus end
        function P:start() self.bus:subscribe("tick", function() error("boom") end) end
        return P ]],
      good = PRELUDE .. [[
        local P = { name = "good" }
        function P:init(bus) self.bus = bus end
        function P:start()
          local n = 0
          self.bus:subscribe("tick", function(ev)
            n = n + 1
            if n == 20 then
              local st = {}
              for _, s in ipairs(daz.plugins.status()) do st[s.name] = s end
              result("iso", { n = n, bad_errors = st.bad.errors, good_errors = st.good.errors,
                              bad_degraded = st.bad.degraded })
            end
          end)
          self.bus:after(10, function() for i = 1, 20 do self.bus:publish("tick", { i = i }) end end)
        end
        return P ]],
    }, "plugin_host = { degraded_after_errors = 10 }", { env = { DAZ_LOG_REPEAT_INTERVAL_MS = "200" } })
    local r = p.wait_result("iso")
    assert.equals(20, r.n)
    assert.equals(0, r.good_errors)
    -- the bad plugin runs before good in discovery order, so all 20 errors are in
    assert.equals(20, r.bad_errors)
    assert.is_true(r.bad_degraded)
    -- the first 10 in full, the rest in a summary line (spec/log_repeat_spec.lua)
    local errs = p.logs("handler failed: .*boom")
    assert.equals(10, #errs)
    assert.truthy(errs[1].msg:find("stack traceback", 1, true), "errors carry a traceback")
    p.wait_log("^10 more errors like this in the last .*boom$")
  end)

  it("aborts a runaway handler by its instruction budget and keeps the plugin working", function()
    p = run({ loop = PRELUDE .. [[
      local P = { name = "loop" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local n = 0
        self.bus:subscribe("spin", function() while true do end end)
        self.bus:subscribe("spin.pcall", function() while true do pcall(function() while true do end end) end end)
        self.bus:subscribe("after", function() n = n + 1; result("after", { n = n }) end)
        self.bus:after(10, function()
          self.bus:publish("spin", {})
          self.bus:publish("spin.pcall", {})
          self.bus:publish("after", {})
        end)
      end
      return P ]] }, "plugin_host = { instruction_budget = 100000 }")
    local r = p.wait_result("after", 10)
    assert.equals(1, r.n)
    assert.equals(2, #p.logs("instruction budget of 100000 exceeded"))
  end)

  it("runs handlers in order per plugin even when they wait, or concurrently when asked", function()
    p = run({ waits = PRELUDE .. [[
      local P = { name = "waits" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local seq, conc = {}, {}
        self.bus:subscribe("seq", function(ev)
          daz.sleep(30 - ev.data.i * 10)   -- the first waits longest
          seq[#seq + 1] = ev.data.i
          if #seq == 3 then result("seq", seq) end
        end)
        self.bus:subscribe("conc", function(ev)
          daz.sleep(30 - ev.data.i * 10)
          conc[#conc + 1] = ev.data.i
          if #conc == 3 then result("conc", conc) end
        end, { concurrent = true })
        self.bus:after(10, function()
          for i = 0, 2 do self.bus:publish("seq", { i = i }); self.bus:publish("conc", { i = i }) end
        end)
      end
      return P ]] })
    assert.same({ 0, 1, 2 }, p.wait_result("seq"))
    assert.same({ 2, 1, 0 }, p.wait_result("conc"))
  end)

  it("orders init and start by depends, and names a missing dependency or a cycle", function()
    local function plugin(name, deps)
      return ([[
        local P = { name = %q, depends = %s }
        function P:init() daz.log.info("INIT %s") end
        function P:start() daz.log.info("START %s") end
        return P ]]):format(name, deps, name, name)
    end
    p = run({ a = plugin("a", '{ "b" }'), b = plugin("b", '{ "c" }'), c = plugin("c", "{}") })
    p.wait_log("ready")
    local seen = {}
    for _, l in ipairs(p.lines()) do
      local what = l.msg and l.msg:match("^(%u+ %a)$")
      if what then seen[#seen + 1] = what end
    end
    assert.same({ "INIT c", "INIT b", "INIT a", "START c", "START b", "START a" }, seen)
    p.stop_clean()

    p = run({ a = plugin("a", '{ "b" }'), b = plugin("b", '{ "a" }') })
    assert.equals(1, p.wait_exit(10))
    assert.equals(1, #p.logs("plugin dependency cycle: a %-> b %-> a"), p.output())

    p = run({ a = plugin("a", '{ "zzz" }') })
    assert.equals(1, p.wait_exit(10))
    assert.equals(1, #p.logs('plugin "a" depends on "zzz", which is not installed'), p.output())

    p = run({ a = plugin("a", "{}"), b = plugin("b", '{ "a" }') }, "plugins = { a = { enabled = false } }")
    assert.equals(1, p.wait_exit(10))
    assert.equals(1, #p.logs('plugin "b" depends on "a", which is disabled'), p.output())
  end)

  it("hands plugins.<name> to init and skips a disabled plugin", function()
    p = run({
      cfg = PRELUDE .. [[
        local P = { name = "cfg" }
        function P:init(bus, config) result("cfg", config) end
        return P ]],
      off = [[ local P = { name = "off" } function P:init() daz.log.info("OFF RAN") end return P ]],
    }, [[plugins = { cfg = { greeting = "hi", n = 3 }, off = { enabled = false } }]])
    local r = p.wait_result("cfg")
    assert.equals("hi", r.greeting)
    assert.equals(3, r.n)
    p.wait_log("ready")
    assert.equals(0, #p.logs("OFF RAN"))
  end)

  it("does not load the file of a disabled plugin at all", function()
    p = run({
      on = PRELUDE .. [[ local P = { name = "on" } function P:init() result("on", true) end return P ]],
      broken = [[ this is not Lua ]],
      raises = [[ error("LOADED WHILE DISABLED") ]],
    }, [[plugins = { broken = { enabled = false }, raises = { enabled = false } }]])
    assert.is_true(p.wait_result("on"))
    p.wait_log("ready")
    assert.equals(0, #p.logs("LOADED WHILE DISABLED"), p.output())
    assert.equals(1, #p.logs("broken: disabled by config"), p.output())
    assert.equals(0, #p.logs("no such plugin"), p.output())
    local _, code, out = daz.run({ "-config", daz.write_config(("return { plugin_dirs = { %q }, %s }")
      :format(p.plugin_dir, "plugins = { broken = { enabled = false }, raises = { enabled = false } }")), "-check-config" })
    assert.equals(0, code, out)
  end)

  it("gives each plugin its own globals", function()
    p = run({
      g1 = PRELUDE .. [[ counter = 1; local P = { name = "g1" }
        function P:init(bus) bus:after(20, function() result("g1", { counter = counter }) end) end
        return P ]],
      g2 = PRELUDE .. [[ counter = 2; local P = { name = "g2" }
        function P:init(bus) bus:after(20, function() result("g2", { counter = counter }) end) end
        return P ]],
    })
    assert.equals(1, p.wait_result("g1").counter)
    assert.equals(2, p.wait_result("g2").counter)
  end)

  local function consumer(version)
    return PRELUDE .. ([[
      local P = { name = "consumer" }
      function P:init(bus) self.bus = bus; self.seen = self.seen or {} end
      function P:save() return self.seen end
      function P:restore(seen) self.seen = seen end
      function P:start()
        self.bus:every(5, function() daz.log.info("TICK v%d") end)
        self.bus:subscribe("flow", function(ev)
          local s = self.seen
          s[ev.data.i] = (s[ev.data.i] or 0) + 1
          if ev.data.last then
            local missing, dup = 0, 0
            for i = 1, ev.data.i do
              if not s[i] then missing = missing + 1 elseif s[i] > 1 then dup = dup + 1 end
            end
            result("flow", { missing = missing, dup = dup, version = %d, n = ev.data.i })
          end
        end)
      end
      return P ]]):format(version, version)
  end

  local producer = [[
    local P = { name = "producer" }
    function P:init(bus) self.bus = bus end
    function P:start()
      local i = 0
      local t
      t = self.bus:every(2, function()
        for _ = 1, 20 do
          i = i + 1
          self.bus:publish("flow", { i = i, last = i == 3000 })
        end
        if i >= 3000 then t:cancel() end
      end)
    end
    return P ]]

  it("reloads on SIGHUP while events flow: every event delivered exactly once, old timers stop", function()
    p = run({ consumer = consumer(1), producer = producer })
    p.wait_log("TICK v1")
    local path = p.plugin_dir .. "/consumer.lua"
    -- Reload twice mid-flow (mtime must change: rewrite, then signal).
    for v = 2, 3 do
      h.sleep(0.05) -- let events flow between reloads (pacing, not a wait on a condition)
      h.write_file(path, consumer(v))
      h.sh("touch -d '+" .. v .. " seconds' " .. h.shquote(path))
      p.signal("HUP")
      p.wait_log("TICK v" .. v)
    end
    local r = p.wait_result("flow", 20)
    assert.equals(0, r.missing)
    assert.equals(0, r.dup)
    assert.equals(3, r.version)
    -- After the last reload line, no old-version timer fired.
    local lines = p.lines()
    local last_reload
    for i, l in ipairs(lines) do if l.msg and l.msg:find("reloaded from") then last_reload = i end end
    for i = last_reload + 1, #lines do
      assert.is_nil((lines[i].msg or ""):match("^TICK v[12]$"), "old timer fired after reload")
    end
  end)

  it("keeps the running plugin when the new file does not compile", function()
    p = run({ consumer = consumer(1) })
    p.wait_log("TICK v1")
    local path = p.plugin_dir .. "/consumer.lua"
    h.write_file(path, "local P = { name = 'consumer' \n return P +")
    h.sh("touch -d '+5 seconds' " .. h.shquote(path))
    p.signal("HUP")
    p.wait_log("reload failed, the running version stays")
    local before = #p.logs("^TICK v1$")
    h.wait_until(function() return #p.logs("^TICK v1$") > before + 3 end, 5, "old version still ticking")
  end)

  it("checks the settings against a reloaded version's schema, with its defaults", function()
    local function typed(version, settings)
      return PRELUDE .. ([[local S = require("core.schema")
        local P = { name = "typed", settings = %s }
        function P:init(bus, cfg) result("cfg%d", cfg) end
        return P]]):format(settings, version)
    end
    p = run({ typed = typed(1, "{ n = S.int { default = 1 } }") }, "plugins = { typed = { n = 5 } }")
    assert.equals(5, p.wait_result("cfg1").n)
    local path = p.plugin_dir .. "/typed.lua"
    h.write_file(path, typed(2, "{ m = S.int {} }"))
    h.sh("touch -d '+5 seconds' " .. h.shquote(path))
    p.signal("HUP")
    local line = p.wait_log("reload failed, the running version stays")
    assert.truthy(line.msg:find("plugins.typed.n: unknown key", 1, true), line.msg)
    h.write_file(path, typed(3, "{ n = S.int {}, greeting = S.str { default = 'hi' } }"))
    h.sh("touch -d '+10 seconds' " .. h.shquote(path))
    p.signal("HUP")
    local cfg = p.wait_result("cfg3")
    assert.same({ n = 5, greeting = "hi" }, cfg)
  end)

  it("releases every Lua registry ref at shutdown", function()
    p = run({ consumer = consumer(1), producer = producer }, nil, { args = { "-verbose" } })
    p.wait_log("TICK v1")
    assert.equals(0, p.stop_clean())
    assert.truthy(p.output():find("all Lua registry refs released", 1, true), p.output())
  end)
end)
