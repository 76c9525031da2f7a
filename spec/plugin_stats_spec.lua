-- lua/plugins/plugin_stats.lua: plugin performance lands in daz_plugin_stats
-- and adds up across restarts.
local h = require("helpers")
local daz = require("daz")

local psql = require("sqlspec").test

describe("plugin_stats", function()
  after_each(h.cleanup_tmp)

  it("writes handled counts every interval and keeps adding after a restart", function()
    local dir = daz.plugin_dir({ ticker = [[
      local P = { name = "stats_ticker" }
      function P:init(bus)
        bus:subscribe("spec.tick", function() end)
        bus:after(10, function() for i = 1, 25 do bus:publish("spec.tick", { i = i }) end end)
      end
      return P ]] })
    -- Only the plugins of this spec: the shipped feature plugins are disabled.
    local config = ("return { plugin_dirs = { 'lua/plugins', %q }, plugins = { plugin_stats = { interval_ms = 1000 },"
      .. " eventfilter = { enabled = false }, commands = { enabled = false }, usertracker = { enabled = false },"
      .. " mediatracker = { enabled = false }, analytics = { enabled = false } } }"):format(dir)
    local installed = h.sh("ls lua/plugins/plugin_stats.lua")
    assert.is_true(installed)
    local function handled()
      local v = psql("SELECT value->>'handled' FROM daz_plugin_stats WHERE plugin = 'stats_ticker' AND stat = 'performance'")
      return tonumber(v)
    end
    local p = daz.start({ config = config })
    p.wait_log("^ready$") -- migrations applied; the first write is a second away
    psql("DELETE FROM daz_plugin_stats WHERE plugin = 'stats_ticker'")
    h.wait_until(function() return handled() == 26 end, 15, "26 handled (25 events + the timer call) in daz_plugin_stats")
    assert.equals(0, p.stop_clean())
    p = daz.start({ config = config })
    h.wait_until(function() return handled() == 52 end, 15, "52 handled after a restart")
    assert.equals(0, p.stop_clean())
  end)
end)
