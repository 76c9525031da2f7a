-- Spec helper: run the real bin/daz (the sanitizer build under `make test`)
-- with a generated config, read its JSON log lines, stop it, and check that
-- it left no sanitizer report behind.
local h = require("helpers")
local cjson = require("cjson")

local M = {}

-- Write `text` (a Lua chunk) as a config file in a fresh directory.
function M.write_config(text)
  local dir = h.tmpdir()
  return h.write_file(dir .. "/config.lua", text), dir
end

-- Sanitizer reports written by process `pid` (see scripts/test).
function M.sanitizer_reports(pid)
  local dir = os.getenv("DAZ_SANITIZER_DIR")
  if not dir then return nil end
  local _, _, out = h.sh(("ls %s 2>/dev/null | grep -E '\\.%d$'"):format(h.shquote(dir), pid))
  if out:match("%S") then
    return h.sh(("cat %s/*.%d"):format(h.shquote(dir), pid))
  end
end

-- Run daz to completion (for -check-config, -version ...): ok, code, output.
function M.run(args, env)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. h.shquote(v) end
  parts[#parts + 1] = h.shquote(h.daz_bin)
  for _, a in ipairs(args) do parts[#parts + 1] = h.shquote(a) end
  return h.sh("cd " .. h.shquote(h.root) .. " && env " .. table.concat(parts, " "))
end

-- Test plugins start with this: `result(key, value)` logs "RESULT <key>
-- <json>", which p.wait_result(key) reads back.
M.RESULT_PRELUDE = 'local cjson = require("cjson")\n' ..
  'local function result(k, v) daz.log.info("RESULT %s %s", k, cjson.encode(v)) end\n'

-- Write plugin files (name -> Lua source) into a fresh directory; returns it.
function M.plugin_dir(plugins)
  local dir = h.tmpdir()
  for name, source in pairs(plugins) do
    h.write_file(dir .. "/" .. name .. ".lua", source)
  end
  return dir
end

-- Start daz in the background. opts: config (Lua text) or config_path,
-- args, env. Logs are JSON lines (stderr is not a terminal).
function M.start(opts)
  opts = opts or {}
  local path = opts.config_path or M.write_config(opts.config or "return {}")
  local argv = { h.daz_bin, "-config", path }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local env = { DAZ_HEALTH__PORT = "0" }
  -- daz needs a database: a config without core.database uses the test
  -- cluster (scripts/test exports DAZ_TEST_PG_URL), as `make run` does.
  env.DAZ_LOCAL_DATABASE_URL = os.getenv("DAZ_TEST_PG_URL")
  -- Each run spools to its own directory, never the checkout's var/spool.
  env.DAZ_SPOOL__DIR = h.tmpdir() .. "/spool"
  for k, v in pairs(opts.env or {}) do env[k] = v end
  -- Rooms keep their reconnect backoff in the database (daz_room_backoff); a
  -- spec starts without one left by an earlier spec unless it asks to keep it.
  if env.DAZ_LOCAL_DATABASE_URL and not opts.keep_backoff then
    h.sh(("psql %s -XAtq -c 'DELETE FROM daz_room_backoff' 2>/dev/null"):format(h.shquote(env.DAZ_LOCAL_DATABASE_URL)))
  end
  local p = h.spawn(argv, { env = env, cwd = h.root })

  -- Decoded log lines so far (non-JSON lines are kept as { raw = line }).
  function p.lines()
    local out = {}
    for line in p.output():gmatch("[^\n]+") do
      local ok, v = pcall(cjson.decode, line)
      out[#out + 1] = ok and type(v) == "table" and v or { raw = line }
    end
    return out
  end

  -- Wait for a log line whose msg matches `pattern`; returns it.
  function p.wait_log(pattern, timeout_s)
    return h.wait_until(function()
      for _, l in ipairs(p.lines()) do
        if l.msg and l.msg:find(pattern) then return l end
      end
      if not p.running() then
        error("daz exited (" .. tostring(p.exit_code()) .. ") before logging " .. pattern .. ":\n" .. p.output())
      end
    end, timeout_s or 10, "log line matching " .. pattern)
  end

  -- Every log line (decoded) whose msg matches pattern.
  function p.logs(pattern)
    local out = {}
    for _, l in ipairs(p.lines()) do
      if l.msg and l.msg:find(pattern) then out[#out + 1] = l end
    end
    return out
  end

  -- Test plugins report with daz.log.info("RESULT <key> <json>"); wait for
  -- and decode the latest such report for key.
  function p.wait_result(key, timeout_s)
    local line = p.wait_log("^RESULT " .. key .. " ", timeout_s)
    return cjson.decode(line.msg:sub(#("RESULT " .. key .. " ") + 1))
  end

  -- Stop with SIGTERM; returns the exit code. Raises if a sanitizer complained.
  function p.stop_clean(timeout_s)
    local code = p.stop(timeout_s)
    local report = M.sanitizer_reports(p.pid)
    if report then error("sanitizer report for daz pid " .. p.pid .. ":\n" .. report) end
    return code
  end
  return p
end

return M
