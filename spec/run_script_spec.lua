-- scripts/run (`make run`): signals reach bin/daz, whose exit code is the
-- script's, and the private PostgreSQL stops only after daz has.
local h = require("helpers")

local NAME = "spec-run" -- its own cluster: never the run or test ones
local PG = h.shquote(h.root .. "/scripts/pg-local") .. " --name " .. NAME

local function pg_status()
  local _, rc = h.sh(PG .. " status")
  return rc
end

-- scripts/run with a config of our own; returns the script's process.
local function run(config_text)
  local dir = h.tmpdir()
  local config = h.write_file(dir .. "/config.lua", config_text)
  -- env --default-signal: a background job starts with SIGINT ignored, as
  -- make run from a terminal does not.
  return h.spawn({ "env", "--default-signal=INT", h.root .. "/scripts/run" }, { cwd = h.root, env = {
    DAZ_CONFIG = config, DAZ_RUN_PG_NAME = NAME, DAZ_BIN = h.daz_bin,
    DAZ_HEALTH__PORT = "0", DAZ_SPOOL__DIR = dir .. "/spool",
  } })
end

local function daz_pid(script)
  return h.wait_until(function()
    local ok, _, out = h.sh("pgrep -f -P " .. script.pid .. " -- -config")
    return ok and tonumber(out:match("(%d+)"))
  end, 60, "bin/daz under scripts/run")
end

local function wait_ready(script)
  h.wait_until(function()
    if not script.running() then error("scripts/run exited early:\n" .. script.output()) end
    return script.output():find('"msg":"ready"', 1, true)
  end, 90, "daz ready under scripts/run")
end

describe("scripts/run", function()
  local left = {}

  teardown(function()
    for _, pid in ipairs(left) do h.sh("kill -KILL " .. pid .. " 2>/dev/null") end
    h.sh(PG .. " destroy")
    h.cleanup_tmp()
  end)

  it("passes SIGTERM to daz, waits for it, then stops the database", function()
    local script = run("return {}")
    wait_ready(script)
    local pid = daz_pid(script)
    left[#left + 1] = pid
    assert.equals(0, pg_status())
    script.signal("TERM")
    local code = script.wait_exit(30)
    assert.is_false(h.alive(pid), "bin/daz was orphaned")
    assert.equals(0, code, script.output())
    assert.truthy(script.output():find("shutting down (SIGTERM)", 1, true), script.output())
    assert.equals(3, pg_status())
  end)

  it("turns SIGHUP into a plugin reload, and exits with daz's code", function()
    local script = run("return {}")
    wait_ready(script)
    local pid = daz_pid(script)
    left[#left + 1] = pid
    script.signal("HUP")
    h.wait_until(function() return script.output():find("SIGHUP: reloading", 1, true) end, 10, "the reload")
    assert.is_true(script.running(), script.output())
    assert.is_true(h.alive(pid))
    script.signal("INT")
    assert.equals(0, script.wait_exit(30), script.output())
    assert.is_false(h.alive(pid))
    assert.equals(3, pg_status())

    -- A start that fails: daz's exit code 1 is the script's.
    script = run([[return { core = { database = { migrations_dir = "no-such-sql" } } }]])
    assert.equals(1, script.wait_exit(90), script.output())
    assert.equals(3, pg_status())
  end)
end)
