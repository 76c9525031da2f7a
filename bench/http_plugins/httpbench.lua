-- HTTP benchmark driver (bench/http_bench.sh): the RSS before and after the
-- first request (libcurl is loaded by it), then requests/s from Lua to the
-- loopback test server with 1 and with 100 in flight, and p99 per request.
-- Prints one line "BENCH <json>".
local cjson = require("cjson")

local P = { name = "httpbench" }

local URL = os.getenv("DAZ_BENCH_HTTP_URL") .. "/status/200"
local N1 = tonumber(os.getenv("DAZ_BENCH_HTTP_N1")) or 2000
local N100 = tonumber(os.getenv("DAZ_BENCH_HTTP_N100")) or 10000
local WORKERS = 100

local function rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb)
end

local function p99(times)
  table.sort(times)
  return times[math.max(1, math.ceil(#times * 0.99))] * 1000
end

function P:init(bus) self.bus = bus end

function P:start()
  local bus = self.bus
  local out, times100, done100, t100 = {}, {}, 0, nil
  local failed = 0
  local function one(times)
    local t0 = daz.uptime()
    local resp = http.get(URL)
    if not resp or resp.status ~= 200 then failed = failed + 1 end
    times[#times + 1] = daz.uptime() - t0
  end
  bus:subscribe("httpbench.worker", function(ev)
    for _ = 1, ev.data.n do one(times100) end
    done100 = done100 + 1
    if done100 == WORKERS then
      local s = daz.uptime() - t100
      out.requests_per_s_100 = N100 / s
      out.p99_ms_100 = p99(times100)
      out.failed = failed
      collectgarbage()
      out.rss_mb_after = rss_kb() / 1024
      daz.log.info("BENCH %s", cjson.encode(out))
    end
  end, { concurrent = true })
  bus:after(500, function()
    collectgarbage()
    out.rss_mb_before = rss_kb() / 1024
    local t0 = daz.uptime()
    local resp, err = http.get(URL)
    out.first_request_ms = (daz.uptime() - t0) * 1000
    if not resp then
      daz.log.error("BENCH failed: %s", tostring(err))
      return
    end
    collectgarbage()
    out.rss_mb_after_first = rss_kb() / 1024
    local times = {}
    t0 = daz.uptime()
    for _ = 1, N1 do one(times) end
    out.requests_per_s_1 = N1 / (daz.uptime() - t0)
    out.p99_ms_1 = p99(times)
    t100 = daz.uptime()
    for _ = 1, WORKERS do bus:publish("httpbench.worker", { n = N100 // WORKERS }) end
  end)
end

return P
