-- bin/daz as a process: signals, orderly shutdown, and logs that never
-- carry a secret.
local h = require("helpers")
local daz = require("daz")

describe("daz process", function()
  after_each(h.cleanup_tmp)

  for _, sig in ipairs({ "TERM", "INT" }) do
    it("exits 0 within 2 s on SIG" .. sig .. " with no sanitizer report", function()
      local p = daz.start({ config = "return {}" })
      p.wait_log("ready")
      local t0 = h.now()
      p.signal(sig)
      local code = p.wait_exit(2)
      assert.equals(0, code, p.output())
      assert.is_true(h.now() - t0 < 2)
      assert.is_nil(daz.sanitizer_reports(p.pid))
      p.wait_log("stopped")
    end)
  end

  it("keeps running on SIGHUP (reserved for plugin reload)", function()
    local p = daz.start({ config = "return {}" })
    p.wait_log("ready")
    p.signal("HUP")
    p.wait_log("SIGHUP")
    assert.is_true(p.running())
    assert.equals(0, p.stop_clean())
  end)

  it("names -health-port, DAZ_HEALTH__PORT and health.port when the health port is busy", function()
    local port = tostring(h.free_port())
    local first = daz.start({ config = "return {}", env = { DAZ_HEALTH__PORT = port } })
    finally(function() first.stop() end)
    first.wait_log("ready")
    local second = daz.start({ config = "return {}", env = { DAZ_HEALTH__PORT = port } })
    local code = second.wait_exit(20)
    assert.equals(1, code, second.output())
    local line = second.wait_log("cannot listen")
    assert.truthy(line.msg:find("127.0.0.1:" .. port .. ": Address already in use", 1, true), line.msg)
    for _, name in ipairs({ "-health-port", "DAZ_HEALTH__PORT", "health.port" }) do
      assert.truthy(line.msg:find(name, 1, true), name .. " not named: " .. line.msg)
    end
    assert.equals(0, first.stop_clean())
  end)

  it("says so at start when the config joins no channel, naming DAZ_CHANNEL and core.rooms", function()
    local p = daz.start({ config_path = h.root .. "/config.lua", env = { DAZ_CHANNEL = "" } })
    finally(function() p.stop() end)
    local line = p.wait_log("joins no channel")
    assert.equals("warn", line.level)
    assert.truthy(line.msg:find("DAZ_CHANNEL", 1, true) and line.msg:find("core.rooms", 1, true), line.msg)
    p.wait_log("ready")
    assert.equals(0, p.stop_clean())
    local _, code, out = daz.run({ "-config", "config.lua", "-check-config" })
    assert.equals(0, code, out)
    assert.truthy(out:find("joins no channel", 1, true), out)

    p = daz.start({ config = [[return { core = { rooms = { { channel = "quiet", enabled = false } } } }]] })
    line = p.wait_log("joins no channel")
    assert.truthy(line.msg:find("enabled = false", 1, true), line.msg)
    assert.equals(0, p.stop_clean())
    p = daz.start({ config = [[return { core = { rooms = { { channel = "one", server = "http://127.0.0.1:1" } } } }]] })
    p.wait_log("ready")
    assert.equals(0, #p.logs("joins no channel"), p.output())
    assert.equals(0, p.stop_clean())
  end)

  it("writes JSON lines when stderr is not a terminal", function()
    local p = daz.start({ config = "return {}" })
    local line = p.wait_log("ready")
    assert.equals("info", line.level)
    assert.truthy(line.ts and line.component)
    p.stop_clean()
  end)

  it("never logs a password from config.lua or the environment", function()
    local secret_cfg, secret_env, secret_db = "cfg-Secret-9f3a", "env-Secret-7c21", "dbpw-Secret-55"
    local p = daz.start({
      config = ([[return {
        core = {
          rooms = { { channel = "r1", username = "bot", password = %q },
                    { channel = "r2", username = "bot", password = os.getenv("DAZ_PASSWORD") } },
          database = { url = %q },
        },
        plugins = { something = { api_token = "tok-Secret-1234" } },
      }]]):format(secret_cfg,
        -- the test database (trust auth ignores the password), with one
        (os.getenv("DAZ_TEST_PG_URL") or "postgresql:///daz?host=/nonexistent") .. "&password=" .. secret_db),
      env = { DAZ_PASSWORD = secret_env, DAZ_CORE__ROOMS__1__CHANNEL_PASSWORD = "chanpw-Secret-42" },
      args = { "-verbose" },
    })
    p.wait_log("ready")
    p.stop_clean()
    local out = p.output()
    -- The debug log does print the config; the secrets in it must be masked.
    assert.truthy(out:find("effective config", 1, true), out)
    assert.truthy(out:find("***", 1, true), out)
    assert.truthy(#out > 0)
    for _, s in ipairs({ secret_cfg, secret_env, secret_db, "tok-Secret-1234", "chanpw-Secret-42" }) do
      assert.is_nil(out:find(s, 1, true), "secret " .. s .. " leaked:\n" .. out)
    end
  end)
end)
