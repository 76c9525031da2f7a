-- The Lua `http` API through the real bin/daz and the loopback HTTP test
-- server: every outcome (answers, timeout, too large, redirects, the SSRF
-- guard, TLS, DNS, connect, busy), misuse raising, cancellation on reload,
-- 200 concurrent requests while /health/live stays up, and the metrics.
local h = require("helpers")
local daz = require("daz")
local httpserver = require("httpserver")
local cjson = require("cjson")

describe("http API", function()
  local web, p

  setup(function() web = httpserver.start() end)
  teardown(function()
    if web then web:stop() end
    h.cleanup_tmp()
  end)
  after_each(function()
    if p and p.running() then assert.equals(0, p.stop_clean()) end
    p = nil
  end)

  -- Plugins see WEB (the test server's URL), WEB_PORT and HTTPS.
  local function source(body)
    return daz.RESULT_PRELUDE .. ("local WEB, WEB_PORT, HTTPS = %q, %d, %q\n"):format(web.url, web.port, web.https_url) .. body
  end

  local function start(plugins, http_cfg, env)
    local srcs = {}
    for name, body in pairs(plugins) do srcs[name] = source(body) end
    local dir = daz.plugin_dir(srcs)
    local config = ("return { plugin_dirs = { %q }, http = %s }"):format(dir, http_cfg or "{}")
    local proc = daz.start({ config = config, env = env })
    proc.plugin_dir = dir
    return proc
  end

  local function allow_web(extra)
    return ("{ allow_private = { %q %s } %s }"):format("127.0.0.1:" .. web.port, "", extra or "")
  end

  it("answers, limits, redirects, errors and misuse, each as documented", function()
    local closed = h.free_port()
    local health = h.free_port()
    p = start({ api = [[
      local P = { name = "api" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local ok, err = pcall(http.get, WEB .. "/title?t=x")
        result("in_start", { ok = ok, err = tostring(err) })
        self.bus:after(1, function()
          local r = {}
          local function e(resp, err) return { status = resp and resp.status, err = err } end
          local resp = http.get(WEB .. "/title?t=Hello")
          r.title = { status = resp.status, has = resp.body:find("<title>Hello</title>", 1, true) ~= nil,
                      ctype = resp.headers["content-type"], url = resp.url }
          local echo = http.post(WEB .. "/echo", { a = 1, s = "x" }, { headers = { ["X-Test"] = "yes" } })
          local got = echo:json()
          r.echo = { method = got.method, ctype = got.headers["content-type"], ua = got.headers["user-agent"],
                     xtest = got.headers["x-test"], body = cjson.decode(got.body),
                     cookies = echo.headers["set-cookie"], multi = echo.headers["x-multi"] }
          local put = http.request{ method = "PUT", url = WEB .. "/echo", body = "raw", headers = { ["Content-Type"] = "text/plain" } }
          local pj = put:json()
          r.put = { method = pj.method, body = pj.body, ctype = pj.headers["content-type"] }
          local j = http.get(WEB .. "/json")
          local v, jerr = j:json()
          r.json = { ok = v and v.ok, n2 = v and v.n[2], err = jerr }
          local bad = http.get(WEB .. "/badjson")
          local bv, berr = bad:json()
          r.badjson = { v = bv == nil, err = type(berr) }
          r.s404 = e(http.get(WEB .. "/status/404"))
          r.s500 = e(http.get(WEB .. "/status/500"))
          r.timeout = e(http.get(WEB .. "/slow?ms=3000", { timeout_ms = 300 }))
          r.big_cap = e(http.get(WEB .. "/big?bytes=2000", { max_bytes = 1000 }))
          r.big_default = e(http.get(WEB .. "/big?bytes=1048577"))
          r.big_fits = e(http.get(WEB .. "/big?bytes=1048576"))
          r.endless = e(http.get(WEB .. "/endless", { max_bytes = 200000 }))
          local ch = http.get(WEB .. "/chunked?n=5&size=10")
          r.chunked = { status = ch.status, len = #ch.body }
          local rd = http.get(WEB .. "/redirects?n=3")
          r.redirects = { status = rd.status, body = rd.body, url = rd.url }
          r.too_many = e(http.get(WEB .. "/redirects?n=6"))
          r.nofollow = e(http.get(WEB .. "/redirects?n=1", { follow = false }))
          r.redirect_private = e(http.get(WEB .. "/redirect?to=" .. "http://127.0.0.2:" .. WEB_PORT .. "/title"))
          r.redirect_metadata = e(http.get(WEB .. "/redirect?to=http://169.254.169.254/latest/meta-data/", { timeout_ms = 2000 }))
          r.health = e(http.get("http://127.0.0.1:]] .. health .. [[/metrics"))
          r.localhost = e(http.get("http://localhost:]] .. health .. [[/metrics"))
          r.mapped = e(http.get("http://[::ffff:127.0.0.1]:]] .. health .. [[/metrics"))
          r.resolved_private = e(http.get("http://public.example:]] .. health .. [[/metrics"))
          r.resolved_ten = e(http.get("http://intranet.example/", { timeout_ms = 2000 }))
          r.resolved_allowed = e(http.get("http://named.example:" .. WEB_PORT .. "/title?t=n"))
          r.tls = e(http.get(HTTPS .. "/title?t=x"))
          r.dns = e(http.get("http://nonexistent.invalid/", { timeout_ms = 5000 }))
          r.connect = e(http.get("http://127.0.0.1:]] .. closed .. [[/"))
          r.bad_url = e(http.get("ftp://example.com/"))
          local function raises(fn) local ok, err = pcall(fn); return not ok and tostring(err) or "did not raise" end
          r.raise_num = raises(function() return http.get(42) end)
          r.raise_opts = raises(function() return http.request("x") end)
          r.raise_url = raises(function() return http.request{ url = 1 } end)
          r.raise_hdr = raises(function() return http.get(WEB, { headers = { 1 } }) end)
          r.raise_crlf = raises(function() return http.get(WEB, { headers = { a = "b\r\nc: d" } }) end)
          r.raise_timeout = raises(function() return http.get(WEB, { timeout_ms = -1 }) end)
          r.raise_follow = raises(function() return http.get(WEB, { follow = "yes" }) end)
          r.raise_body = raises(function() return http.post(WEB, 12) end)
          r.raise_method = raises(function() return http.request{ url = WEB, method = "GE T" } end)
          result("api", r)
        end)
      end
      return P ]] }, ([[{ allow_private = { %q, %q, %q }, resolve = { %q, %q, %q } }]]):format(
        "127.0.0.1:" .. web.port, "127.0.0.1:" .. closed, "127.0.0.1:" .. web.https_port,
        "public.example:" .. health .. ":127.0.0.1", "intranet.example:80:10.1.2.3", "named.example:" .. web.port .. ":127.0.0.1"),
      { DAZ_HEALTH__PORT = tostring(health) })

    local s = p.wait_result("in_start")
    assert.is_false(s.ok)
    assert.matches("can only wait inside a handler", s.err)
    local r = p.wait_result("api", 60)
    assert.same({ status = 200, has = true, ctype = "text/html; charset=utf-8", url = web.url .. "/title?t=Hello" }, r.title)
    assert.equals("POST", r.echo.method)
    assert.equals("application/json", r.echo.ctype)
    assert.equals("daz/0.1.0", r.echo.ua)
    assert.equals("yes", r.echo.xtest)
    assert.same({ a = 1, s = "x" }, r.echo.body)
    assert.equals("c1=1, c2=2", r.echo.cookies)
    assert.equals("a", r.echo.multi)
    assert.same({ method = "PUT", body = "raw", ctype = "text/plain" }, r.put)
    assert.same({ ok = true, n2 = 2 }, r.json)
    assert.same({ v = true, err = "string" }, r.badjson)
    assert.same({ status = 404 }, r.s404)
    assert.same({ status = 500 }, r.s500)
    assert.same({ err = "timeout" }, r.timeout)
    assert.same({ err = "too large" }, r.big_cap)
    assert.same({ err = "too large" }, r.big_default)
    assert.same({ status = 200 }, r.big_fits)
    assert.same({ err = "too large" }, r.endless)
    assert.same({ status = 200, len = 50 }, r.chunked)
    assert.same({ status = 200, body = "end", url = web.url .. "/redirects?n=0" }, r.redirects)
    assert.same({ err = "too many redirects" }, r.too_many)
    assert.same({ status = 302 }, r.nofollow)
    assert.same({ err = "refused: private address" }, r.redirect_private)
    assert.same({ err = "refused: private address" }, r.redirect_metadata)
    assert.same({ err = "refused: private address" }, r.health)
    assert.same({ err = "refused: private address" }, r.localhost)
    assert.same({ err = "refused: private address" }, r.mapped)
    assert.same({ err = "refused: private address" }, r.resolved_private)
    assert.same({ err = "refused: private address" }, r.resolved_ten)
    assert.same({ status = 200 }, r.resolved_allowed)
    assert.matches("^tls: ", r.tls.err)
    assert.matches("^dns: ", r.dns.err)
    assert.matches("^connect: ", r.connect.err)
    assert.matches("^bad url", r.bad_url.err)
    assert.matches("bad argument", r.raise_num)
    assert.matches("bad argument", r.raise_opts)
    assert.matches("url must be a string", r.raise_url)
    assert.matches("header names must be strings", r.raise_hdr)
    assert.matches("line break", r.raise_crlf)
    assert.matches("timeout_ms must be a positive integer", r.raise_timeout)
    assert.matches("follow must be a boolean", r.raise_follow)
    assert.matches("body must be a string or a table", r.raise_body)
    assert.matches("method must be a string", r.raise_method)

    -- The metrics count each outcome by plugin; /health shows the client.
    local text = h.wait_until(function()
      local _, t = h.http("GET", ("http://127.0.0.1:%d/metrics"):format(health))
      return t:find('outcome="tls"', 1, true) and t
    end, 10, "the metrics to show the requests")
    assert.matches('daz_http_requests_total{plugin="api",outcome="ok"} %d+', text)
    assert.matches('daz_http_requests_total{plugin="api",outcome="refused"} 7\n', text)
    assert.matches('daz_http_requests_total{plugin="api",outcome="timeout"} 1\n', text)
    assert.matches('daz_http_requests_total{plugin="api",outcome="too_large"} 3\n', text)
    assert.matches('daz_http_requests_total{plugin="api",outcome="tls"} 1\n', text)
    assert.matches('daz_http_request_seconds_count %d+', text)
    assert.matches('daz_http_in_flight 0', text)
    local _, body = h.http("GET", ("http://127.0.0.1:%d/health"):format(health))
    local doc = cjson.decode(body)
    assert.is_true(doc.components.http.loaded)
    assert.equals(0, doc.components.http.in_flight)
  end)

  it("does not load libcurl until the first request", function()
    local health = h.free_port()
    p = start({ idle = [[ return { name = "idle" } ]] }, "{}", { DAZ_HEALTH__PORT = tostring(health) })
    p.wait_log("^ready")
    local maps = h.read_file("/proc/" .. p.pid .. "/maps") or ""
    assert.is_nil(maps:find("libcurl", 1, true))
    local _, body = h.http("GET", ("http://127.0.0.1:%d/health"):format(health))
    assert.is_false(cjson.decode(body).components.http.loaded)
  end)

  it("runs 200 concurrent requests from one plugin while /health/live stays 200", function()
    local health = h.free_port()
    p = start({ conc = [[
      local P = { name = "conc" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local done, ok = 0, 0
        self.bus:subscribe("go", function(ev)
          local resp, err = http.get(WEB .. "/slow?ms=100")
          done = done + 1
          if resp and resp.status == 200 then ok = ok + 1 end
          if done == 200 then result("conc", { ok = ok }) end
        end, { concurrent = true })
        self.bus:after(300, function()
          for i = 1, 200 do self.bus:publish("go", { i = i }) end
        end)
      end
      return P ]] }, allow_web(), { DAZ_HEALTH__PORT = tostring(health) })
    p.wait_log("^ready")
    local live_failures, polls = 0, 0
    local r = h.wait_until(function()
      local status = h.http("GET", ("http://127.0.0.1:%d/health/live"):format(health))
      polls = polls + 1
      if status ~= 200 then live_failures = live_failures + 1 end
      local l = p.logs("^RESULT conc ")
      if #l > 0 then return cjson.decode(l[1].msg:sub(#"RESULT conc " + 1)) end
    end, 60, "200 requests")
    assert.equals(200, r.ok)
    assert.equals(0, live_failures)
    assert.is_true(polls >= 1)
    h.wait_until(function()
      local _, text = h.http("GET", ("http://127.0.0.1:%d/metrics"):format(health))
      return text:find('daz_http_requests_total{plugin="conc",outcome="ok"} 200\n', 1, true)
    end, 10, "the metrics to count 200 requests")
  end)

  it("answers busy past the queue bound", function()
    p = start({ busy = [[
      local P = { name = "busy" }
      function P:init(bus) self.bus = bus end
      function P:start()
        local out = { ok = 0, busy = 0, other = 0 }
        local n = 0
        self.bus:subscribe("go", function()
          local resp, err = http.get(WEB .. "/slow?ms=200")
          if resp then out.ok = out.ok + 1 elseif err == "busy" then out.busy = out.busy + 1 else out.other = out.other + 1 end
          n = n + 1
          if n == 6 then result("busy", out) end
        end, { concurrent = true })
        self.bus:after(1, function() for i = 1, 6 do self.bus:publish("go", {}) end end)
        -- A request's timeout counts while it waits in the queue.
        self.bus:subscribe("hold", function() http.get(WEB .. "/slow?ms=1500") end, { concurrent = true })
        self.bus:subscribe("short", function()
          local t0 = daz.uptime()
          local resp, err = http.get(WEB .. "/slow?ms=10", { timeout_ms = 300 })
          result("queued_timeout", { err = err, ms = (daz.uptime() - t0) * 1000 })
        end, { concurrent = true })
        self.bus:after(2000, function() self.bus:publish("hold", {}); self.bus:publish("short", {}) end)
      end
      return P ]] }, allow_web(", max_in_flight_per_plugin = 1, max_queued = 2"))
    assert.same({ ok = 3, busy = 3, other = 0 }, p.wait_result("busy", 20))
    local q = p.wait_result("queued_timeout", 20)
    assert.equals("timeout", q.err)
    assert.is_true(q.ms >= 250 and q.ms < 1200, "took " .. q.ms .. " ms")
  end)

  it("cancels requests in flight when the plugin reloads; nothing calls back into the old code", function()
    local health = h.free_port()
    local body = [[
      local P = { name = "slowone" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(1, function()
          daz.log.info("VERSION %s STARTED", VERSION)
          local resp, err = http.get(WEB .. "/slow?ms=1500")
          daz.log.info("VERSION %s DONE %s", VERSION, tostring(resp and resp.status or err))
        end)
      end
      return P ]]
    p = start({ slowone = "local VERSION = 1\n" .. body }, allow_web(), { DAZ_HEALTH__PORT = tostring(health) })
    p.wait_log("VERSION 1 STARTED")
    h.write_file(p.plugin_dir .. "/slowone.lua", source("local VERSION = 2\n" .. body))
    h.sh("touch -d '+2 seconds' " .. h.shquote(p.plugin_dir .. "/slowone.lua"))
    p.signal("HUP")
    p.wait_log("VERSION 2 STARTED")
    p.wait_log("VERSION 2 DONE 200", 10)
    assert.same({}, p.logs("VERSION 1 DONE"))
    h.wait_until(function()
      local _, text = h.http("GET", ("http://127.0.0.1:%d/metrics"):format(health))
      return text:find('daz_http_requests_total{plugin="slowone",outcome="cancelled"} 1\n', 1, true)
    end, 10, "the metrics to count the cancelled request")
  end)

  it("rejects bad http settings in the config", function()
    local path = daz.write_config([[return { http = { allow_private = { "10.0.0.0/99x" }, resolve = { "nope" }, timeout_ms = 1 } }]])
    local ok, _, out = daz.run({ "-config", path, "-check-config" })
    assert.is_false(ok)
    assert.matches("http.allow_private%[1%]", out)
    assert.matches("http.resolve%[1%]: must be host:port:address", out)
    assert.matches("http.timeout_ms: must be between", out)
  end)
end)
