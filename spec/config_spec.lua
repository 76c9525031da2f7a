-- bin/daz configuration: sandboxed config.lua, DAZ_* overrides, flags, and
-- validation that names every problem's path and exits 2.
local h = require("helpers")
local daz = require("daz")

local function check(text, env, args)
  local path = daz.write_config(text)
  local argv = { "-config", path, "-check-config" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local _, code, out = daz.run(argv, env)
  return code, out
end

-- A config problem is reported as lines, never as a Lua traceback.
local function assert_no_traceback(out)
  assert.is_nil(out:find("stack traceback", 1, true), out)
  assert.is_nil(out:find("AddressSanitizer", 1, true), out)
end

describe("config", function()
  after_each(h.cleanup_tmp)

  it("accepts the shipped config.lua", function()
    local _, code, out = daz.run({ "-config", "config.lua", "-check-config" })
    assert.equals(0, code, out)
    assert.truthy(out:find("config.lua: ok", 1, true), out)
  end)

  it("accepts a minimal valid config and reports it ok", function()
    local code, out = check([[return { core = { rooms = { { channel = "abc", username = "bot" } } } }]])
    assert.equals(0, code, out)
    assert.truthy(out:find("1 room", 1, true), out)
  end)

  it("reports a missing file with exit 2", function()
    local _, code, out = daz.run({ "-config", "/nonexistent/daz.lua", "-check-config" })
    assert.equals(2, code)
    assert.truthy(out:find("/nonexistent/daz.lua: cannot read", 1, true), out)
    assert_no_traceback(out)
  end)

  it("reports a Lua syntax error in one line with exit 2", function()
    local code, out = check("return { core = {")
    assert.equals(2, code)
    assert.truthy(out:find("config.lua:1:", 1, true), out)
    assert.equals(1, select(2, out:gsub("\n", "")), out)
    assert_no_traceback(out)
  end)

  it("reports a runtime error in config.lua", function()
    local code, out = check("local x = nil; return { a = x.y }")
    assert.equals(2, code)
    assert.truthy(out:find("error while running", 1, true), out)
    assert_no_traceback(out)
  end)

  it("names the path of a wrong type", function()
    local code, out = check([[return { core = { rooms = { { channel = "ok" }, { channel = 42 } } } }]])
    assert.equals(2, code)
    assert.truthy(out:find("core.rooms[2].channel: expected a string, got number", 1, true), out)
  end)

  it("reports unknown keys, and every problem at once", function()
    local code, out = check([[return { helth = {}, core = { rooms = {}, sever = "x" }, health = { port = 70000 } }]])
    assert.equals(2, code)
    assert.truthy(out:find("helth: unknown key", 1, true), out)
    assert.truthy(out:find("core.sever: unknown key", 1, true), out)
    assert.truthy(out:find("health.port: must be between 0 and 65535", 1, true), out)
  end)

  it("must return a table", function()
    local code, out = check("return 5")
    assert.equals(2, code)
    assert.truthy(out:find("must return a table, got number", 1, true), out)
  end)

  it("sandboxes config.lua: os.getenv works; io, os.execute and require do not", function()
    local code, out = check([[return { core = { server = os.getenv("SPEC_SERVER") } }]],
      { SPEC_SERVER = "http://example.test" })
    assert.equals(0, code, out)
    for _, bad in ipairs({ "io.open('/etc/passwd')", "os.execute('true')", "require('os')", "dofile('/etc/passwd')" }) do
      code, out = check("local x = " .. bad .. "; return {}")
      assert.equals(2, code, bad)
      assert_no_traceback(out)
    end
  end)

  it("aborts a config that never finishes", function()
    local code, out = check("while true do end")
    assert.equals(2, code)
    assert.truthy(out:find("ran too long", 1, true), out)
  end)

  it("applies DAZ_ environment overrides by type", function()
    local code, out = check("return {}", { DAZ_HEALTH__PORT = "9123", DAZ_LOG__LEVEL = "debug",
      DAZ_CORE__DATABASE__URL = "postgresql:///daz" })
    assert.equals(0, code, out)
    assert.truthy(out:find("database: configured", 1, true), out)
  end)

  it("rejects a bad environment override with its variable and path", function()
    local code, out = check("return {}", { DAZ_HEALTH__PORT = "eighty" })
    assert.equals(2, code)
    assert.truthy(out:find('DAZ_HEALTH__PORT (health.port): expected an integer, got "eighty"', 1, true), out)
    code, out = check("return {}", { DAZ_HEALTH__NOPE = "1" })
    assert.equals(2, code)
    assert.truthy(out:find("DAZ_HEALTH__NOPE (health.nope): no such setting", 1, true), out)
    code, out = check("return {}", { DAZ_LOG__LEVEL = "loud" })
    assert.equals(2, code)
    assert.truthy(out:find("DAZ_LOG__LEVEL (log.level): must be one of", 1, true), out)
  end)

  it("leaves plain DAZ_ variables to config.lua", function()
    local code, out = check([[return { core = { rooms = { { channel = "r", username = "u", password = os.getenv("DAZ_PASSWORD") } } } }]],
      { DAZ_PASSWORD = "pw-from-env" })
    assert.equals(0, code, out)
  end)

  it("lets flags win over the environment", function()
    local p = daz.start({ config = "return {}", env = { DAZ_HEALTH__PORT = "9001", DAZ_LOG__LEVEL = "debug" },
      args = { "-health-port", "0" } })
    local line = p.wait_log("effective config")
    assert.truthy(line.msg:find("port=0", 1, true), line.msg)
    p.stop_clean()
    local code, out = check("return {}", { DAZ_HEALTH__PORT = "9001" }, { "-health-port", "nope" })
    assert.equals(2, code)
    assert.truthy(out:find("-health-port (health.port): expected an integer", 1, true), out)
  end)

  it("names the flag or variable of an out-of-range override, once", function()
    local code, out = check("return {}", nil, { "-health-port", "70000" })
    assert.equals(2, code)
    assert.truthy(out:find("-health-port (health.port): must be between 0 and 65535, got 70000", 1, true), out)
    assert.is_nil(out:find("\nhealth.port:", 1, true), out)
    assert.equals(1, select(2, out:gsub("70000", "")), out)
    code, out = check("return {}", { DAZ_HEALTH__PORT = "-1" })
    assert.equals(2, code)
    assert.truthy(out:find("DAZ_HEALTH__PORT (health.port): must be between 0 and 65535, got -1", 1, true), out)
  end)

  it("refuses a channel listed twice", function()
    local code, out = check([[return { core = { rooms = {
      { channel = "a" }, { channel = "b" }, { channel = "a", username = "other" },
      { channel = "b", server = "https://example.org" } } } }]])
    assert.equals(2, code, out)
    assert.truthy(out:find('core.rooms[3]: channel "a" is listed twice (also core.rooms[1])', 1, true), out)
    assert.truthy(out:find('core.rooms[4]: channel "b" is listed twice (also core.rooms[2])', 1, true), out)
    assert_no_traceback(out)
  end)

  it("checks a plugin's declared settings with -check-config, and passes undeclared ones through", function()
    local dir = daz.plugin_dir({
      typed = [[local S = require("core.schema")
        local P = { name = "typed", settings = { greeting = S.str { default = "hi" }, n = S.int { check = S.range(1, 9) } } }
        function P:init() error("init must not run in -check-config") end
        return P]],
      loose = [[return { name = "loose", start = function() error("start must not run") end }]],
      off = [[return { name = "off", settings = { x = { kind = "string" } } }]],
    })
    local code, out = check(([[return { plugin_dirs = { %q }, plugins = {
      typed = { greting = "x", n = 12 }, loose = { anything = { 1, 2 } }, off = { enabled = false, x = 1 } } }]]):format(dir))
    assert.equals(2, code, out)
    assert.truthy(out:find("plugins.typed.greting: unknown key\n", 1, true), out)
    assert.truthy(out:find("plugins.typed.n: must be between 1 and 9, got 12\n", 1, true), out)
    assert.equals(2, select(2, out:gsub("\n", "")), out)
    assert_no_traceback(out)
    code, out = check(([[return { plugin_dirs = { %q }, plugins = { typed = { n = 3 }, loose = { anything = 1 } } }]]):format(dir))
    assert.equals(0, code, out)
  end)

  it("answers -version and -help, and rejects unknown flags with exit 2", function()
    local _, code, out = daz.run({ "-version" })
    assert.equals(0, code)
    assert.truthy(out:match("^daz %d+%.%d+%.%d+"), out)
    _, code, out = daz.run({ "-help" })
    assert.equals(0, code)
    assert.truthy(out:find("-check-config", 1, true), out)
    _, code, out = daz.run({ "-bogus" })
    assert.equals(2, code)
    assert.truthy(out:find("unknown flag -bogus", 1, true), out)
    _, code = daz.run({ "-config" })
    assert.equals(2, code)
  end)
end)
