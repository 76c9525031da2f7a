-- Shared spec helpers: run shell commands, wait on conditions with deadlines,
-- write temporary files, and start/stop the real bin/daz binary.
local system = require("system")

local M = {}

M.root = os.getenv("DAZ_ROOT") or io.popen("pwd"):read("*l")
-- The binary under test: the sanitizer build when `make test` runs us.
M.daz_bin = os.getenv("DAZ_BIN") or (M.root .. "/bin/daz")

function M.now() return system.monotime() end
function M.sleep(s) system.sleep(s) end

-- Quote a string for /bin/sh.
function M.shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command; returns ok, exit code, combined stdout+stderr.
function M.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return rc == 0, rc, out
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- A fresh temporary directory, removed by M.cleanup_tmp().
local tmpdirs = {}
function M.tmpdir()
  local _, _, out = M.sh("mktemp -d /tmp/daz-spec.XXXXXX")
  local d = out:match("[^\n]+")
  tmpdirs[#tmpdirs + 1] = d
  return d
end
function M.cleanup_tmp()
  for _, d in ipairs(tmpdirs) do M.sh("rm -rf " .. M.shquote(d)) end
  tmpdirs = {}
end

-- Poll fn() every interval_s (default 0.02) until it returns a truthy value
-- or the deadline passes. Returns fn's value; raises with `what` on timeout.
function M.wait_until(fn, timeout_s, what, interval_s)
  local deadline = M.now() + (timeout_s or 10)
  repeat
    local v = fn()
    if v then return v end
    M.sleep(interval_s or 0.02)
  until M.now() > deadline
  error(("timed out after %ss waiting for %s"):format(timeout_s or 10, what or "condition"), 2)
end

-- A TCP port on 127.0.0.1 that nothing listens on right now.
function M.free_port()
  local _, _, out = M.sh([[node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"]])
  return assert(tonumber(out:match("(%d+)")), "no free port: " .. out)
end

-- HTTP through curl: returns status code, body.
function M.http(method, url, extra)
  local _, _, out = M.sh(("curl -s -m 10 -X %s %s -w '\n__status=%%{http_code}' %s"):format(
    method, extra or "", M.shquote(url)))
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return status, (out:gsub("\n?__status=%d+%s*$", ""))
end

-- Is process pid alive?
function M.alive(pid)
  return (M.sh("kill -0 " .. pid))
end

-- Start a process in the background with output to a log file.
-- opts.env: table of extra environment variables; opts.cwd: directory.
-- Returns a handle { pid, log, stop(sig), wait_exit(timeout) -> code, output() }.
function M.spawn(argv, opts)
  opts = opts or {}
  local dir = opts.dir or M.tmpdir()
  local log = dir .. "/process.log"
  local rcfile = dir .. "/process.rc"
  local env = ""
  for k, v in pairs(opts.env or {}) do
    env = env .. k .. "=" .. M.shquote(v) .. " "
  end
  local cmd = {}
  for i, a in ipairs(argv) do cmd[i] = M.shquote(a) end
  local cd = opts.cwd and ("cd " .. M.shquote(opts.cwd) .. " && ") or ""
  -- A wrapper shell runs the process and records its exit code when it ends.
  local script = ("( %senv %s%s < /dev/null > %s 2>&1; echo $? > %s ) > /dev/null 2>&1 & echo $!"):format(
    cd, env, table.concat(cmd, " "), M.shquote(log), M.shquote(rcfile))
  local _, _, out = M.sh("sh -c " .. M.shquote(script))
  local shell_pid = tonumber(out:match("(%d+)"))
  local h = { log = log, dir = dir }
  -- The child of the wrapper shell is the real process.
  h.pid = M.wait_until(function()
    local ok, _, o = M.sh("pgrep -P " .. shell_pid)
    if ok then return tonumber(o:match("(%d+)")) end
    local done = M.read_file(rcfile)
    if done then return -1 end
  end, 5, "process to start")
  function h.output() return M.read_file(log) or "" end
  function h.exit_code()
    local s = M.read_file(rcfile)
    return s and tonumber(s:match("%d+"))
  end
  function h.running() return h.exit_code() == nil end
  function h.signal(sig)
    if h.pid > 0 then M.sh("kill -" .. sig .. " " .. h.pid) end
  end
  function h.wait_exit(timeout_s)
    return M.wait_until(function() return h.exit_code() end, timeout_s or 10, "process exit")
  end
  function h.stop(timeout_s)
    if h.running() then
      h.signal("TERM")
      local ok = pcall(h.wait_exit, timeout_s or 5)
      if not ok then h.signal("KILL"); h.wait_exit(5) end
    end
    return h.exit_code()
  end
  return h
end

return M
