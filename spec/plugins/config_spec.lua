-- The feature plugins' settings: the defaults commented in config.lua start,
-- and a mistake stops the start with a message naming the key.
local h = require("helpers")
local daz = require("daz")
local sql = require("sqlspec")

-- The plugins = { ... } block of the shipped config.lua, uncommented.
local function shipped_plugin_settings()
  local text = h.read_file(h.root .. "/config.lua")
  local block = text:match("\n  plugins = {\n(.-)\n  },\n")
  assert(block, "config.lua has no plugins block")
  local lines = {}
  for line in block:gmatch("[^\n]+") do
    local code = line:match("^%s*%-%- (.*)$")
    if code and not line:match("^%s*%-%- The ") then
      lines[#lines + 1] = (code:gsub("%s*%-%- [^\"]*$", ""))
    end
  end
  return "{\n" .. table.concat(lines, "\n") .. "\n}"
end

describe("feature plugin settings", function()
  local dbname, url

  setup(function() dbname, url = sql.create_db() end)
  teardown(function()
    if dbname then sql.drop_db(dbname) end
    h.cleanup_tmp()
  end)

  local function start(plugins_text)
    return daz.start({ config = ("return { plugin_dirs = { %q }, core = { database = { url = %q } }, plugins = %s }")
      :format(h.root .. "/lua/plugins", url, plugins_text) })
  end

  it("accepts the defaults commented in config.lua", function()
    local settings = shipped_plugin_settings()
    assert.truthy(settings:find("spam_ignore = 60", 1, true), settings)
    local p = start(settings)
    local line = p.wait_log("plugin%(s%) started", 20)
    for _, name in ipairs({ "eventfilter", "commands", "usertracker", "mediatracker", "analytics", "links", "notify" }) do
      assert.truthy(line.msg:find(name, 1, true), name .. " did not start: " .. line.msg)
    end
    assert.equals(0, p.stop_clean())
  end)

  it("stops the start on an unknown key or a wrong type with exit 2, before any plugin runs", function()
    local p = start("{ eventfilter = { prefx = '!' } }")
    assert.truthy(h.wait_until(function() return not p.running() end, 20, "daz to give up"))
    assert.equals(2, p.exit_code())
    assert.truthy(p.output():find("plugins.eventfilter.prefx: unknown key", 1, true), p.output())
    assert.equals(0, #p.logs("plugin%(s%) started"), p.output())
    assert.equals(0, #p.logs("database ready"), p.output())
    assert.is_nil(p.output():find("traceback", 1, true), p.output())

    p = start("{ analytics = { interval = 'often', top_days = 0 }, retry = { policies = { x = { max_attempts = 0 } } } }")
    assert.truthy(h.wait_until(function() return not p.running() end, 20, "daz to give up"))
    assert.equals(2, p.exit_code())
    local out = p.output()
    assert.truthy(out:find("plugins.analytics.interval: expected a number, got string", 1, true), out)
    assert.truthy(out:find("plugins.analytics.top_days: must be more than 0, got 0", 1, true), out)
    assert.truthy(out:find("plugins.retry.policies.x.max_attempts: must be at least 1, got 0", 1, true), out)
    assert.is_nil(daz.sanitizer_reports(p.pid))
  end)

  it("checks every shipped plugin's settings with -check-config, starting nothing", function()
    local function check(plugins_text)
      local path = daz.write_config(("return { plugin_dirs = { %q }, plugins = %s }")
        :format(h.root .. "/lua/plugins", plugins_text))
      local _, code, out = daz.run({ "-config", path, "-check-config" })
      return code, out
    end
    local code, out = check(shipped_plugin_settings())
    assert.equals(0, code, out)
    code, out = check([[{
      eventfilter = { prefx = "!", prefix = "far too long", admins = "owner" },
      commands = { cooldown = "5" }, usertracker = { flush_ms = 1.5 }, mediatracker = { nope = 1 },
      analytics = { interval = -1 }, plugin_stats = { interval_ms = 10 },
      retry = { poll_ms = 1, policies = { default = { jitter = "x", bogus = 1 } } },
    }]])
    assert.equals(2, code, out)
    for _, line in ipairs({
      "plugins.eventfilter.prefx: unknown key",
      "plugins.eventfilter.prefix: 1 to 8 characters, no spaces",
      "plugins.eventfilter.admins: expected a list, got string",
      "plugins.commands.cooldown: expected a number, got string",
      "plugins.usertracker.flush_ms: expected an integer, got number",
      "plugins.mediatracker.nope: unknown key",
      "plugins.analytics.interval: must be more than 0, got -1",
      "plugins.plugin_stats.interval_ms: must be at least 1000, got 10",
      "plugins.retry.poll_ms: must be at least 10, got 1",
      "plugins.retry.policies.default.jitter: expected a number, got string",
      "plugins.retry.policies.default.bogus: unknown key",
    }) do
      assert.truthy(out:find(line .. "\n", 1, true), line .. " missing in:\n" .. out)
    end
    assert.equals(11, select(2, out:gsub("\n", "")), out)
    assert.is_nil(out:find("traceback", 1, true), out)
  end)
end)
