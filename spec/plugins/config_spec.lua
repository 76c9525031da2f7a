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
    for _, name in ipairs({ "eventfilter", "commands", "usertracker", "mediatracker", "analytics" }) do
      assert.truthy(line.msg:find(name, 1, true), name .. " did not start: " .. line.msg)
    end
    assert.equals(0, p.stop_clean())
  end)

  it("stops the start on an unknown key or a wrong type", function()
    local p = start("{ eventfilter = { prefx = '!' } }")
    assert.truthy(h.wait_until(function() return not p.running() end, 20, "daz to give up"))
    assert.equals(1, p.exit_code())
    assert.truthy(p.output():find("plugins.eventfilter.prefx: unknown key", 1, true), p.output())

    p = start("{ analytics = { interval = 'often' } }")
    assert.truthy(h.wait_until(function() return not p.running() end, 20, "daz to give up"))
    assert.truthy(p.output():find("plugins.analytics.interval: expected a positive number", 1, true), p.output())
    assert.is_nil(daz.sanitizer_reports(p.pid))
  end)
end)
