-- scripts/pg-local: the private PostgreSQL cluster (DESIGN §6 "Local default").
-- Uses its own cluster name so it never touches the run or test clusters.
local H = require("helpers")

local NAME = "spec-pglocal"
local SCRIPT = H.root .. "/scripts/pg-local"

local function pg(args)
  return H.sh(H.shquote(SCRIPT) .. " --name " .. NAME .. " " .. args)
end

local function pg_ok(args)
  local ok, rc, out = pg(args)
  assert(ok, ("pg-local %s failed (exit %s):\n%s"):format(args, tostring(rc), out))
  return out
end

local function status_code()
  local _, rc = pg("status")
  return rc
end

-- The newest psql binary, independent of the script under test.
local function psql_bin()
  local _, _, out = H.sh("ls -d /usr/lib/postgresql/*/bin/psql | sort -V | tail -n1")
  return (out:match("[^\n]+"))
end

local cluster_dir, datadir

-- Pids of processes of this cluster: the postmaster by its command line, and
-- every backend by its working directory (they all chdir into the data dir).
local function cluster_processes()
  local _, _, a = H.sh("pgrep -f -- " .. H.shquote("[-]D " .. datadir) .. " || true")
  local glob = datadir:gsub("[%[%]%*%?\\]", "\\%0")
  local _, _, b = H.sh("find /proc/[0-9]*/cwd -maxdepth 0 -lname " .. H.shquote(glob) ..
    " 2>/dev/null | cut -d/ -f3; true")
  local pids = {}
  for pid in (a .. "\n" .. b):gmatch("%d+") do pids[#pids + 1] = pid end
  return pids
end

local function postmaster_pid()
  local s = H.read_file(datadir .. "/postmaster.pid")
  return s and tonumber(s:match("^(%d+)"))
end

describe("scripts/pg-local", function()
  setup(function()
    -- Start from nothing: a leftover cluster from an aborted run is removed.
    pg("destroy")
    cluster_dir = pg_ok("dir"):match("[^\n]+")
    datadir = cluster_dir .. "/data"
  end)

  teardown(function()
    -- Always leave no server behind, whatever failed above.
    pg("destroy")
    local left = cluster_processes()
    if #left > 0 then
      H.sh("kill -9 " .. table.concat(left, " "))
    end
  end)

  it("prints a socket URL whether or not the server runs", function()
    local url = pg_ok("url"):match("[^\n]+")
    assert.matches("^postgresql:///daz%?host=/[^&]+&.*user=daz", url)
    assert.equals(3, status_code())
  end)

  it("starts, and starting again is a successful no-op", function()
    pg_ok("start")
    local pid = postmaster_pid()
    assert.truthy(pid, "no postmaster.pid after start")
    pg_ok("start")
    assert.equals(pid, postmaster_pid())
    assert.equals(0, status_code())
  end)

  it("records the cluster under var/", function()
    local ok, _, out = H.sh("cd " .. H.shquote(H.root .. "/var/pg-" .. NAME) .. " && pwd -P")
    assert.is_true(ok, out)
    local _, _, real = H.sh("cd " .. H.shquote(cluster_dir) .. " && pwd -P")
    assert.equals(real, out)
  end)

  it("accepts connections as role daz on database daz, over the socket only", function()
    local url = pg_ok("url"):match("[^\n]+")
    local ok, _, out = H.sh(H.shquote(psql_bin()) .. " -X -At " .. H.shquote(url) ..
      " -c 'select current_user, current_database(), 1'")
    assert.is_true(ok, out)
    assert.equals("daz|daz|1\n", out)

    out = pg_ok("psql -X -At -c 'select 1'")
    assert.equals("1\n", out)

    out = pg_ok("psql -X -At -c \"select current_setting('listen_addresses')\"")
    assert.equals("\n", out)

    -- daz owns its database, so it can create tables in it.
    out = pg_ok("psql -X -q -At -c 'create table pg_local_probe(x int); drop table pg_local_probe; select 2'")
    assert.equals("2\n", out)
  end)

  it("stops, stopping again succeeds, and no process of the cluster remains", function()
    assert.is_true(#cluster_processes() > 0, "expected a running cluster before stop")
    pg_ok("stop")
    pg_ok("stop")
    assert.equals(3, status_code())
    assert.same({}, cluster_processes())
  end)

  it("starts again after the postmaster was killed with SIGKILL (stale pid file)", function()
    pg_ok("start")
    local pid = assert(postmaster_pid())
    assert.is_true((H.sh("kill -9 " .. pid)))
    H.wait_until(function() return status_code() == 3 end, 10, "status to report the killed server")
    assert.truthy(H.read_file(datadir .. "/postmaster.pid"), "the stale pid file should still be there")

    pg_ok("start")
    assert.equals(0, status_code())
    assert.are_not.equal(pid, postmaster_pid())
    assert.equals("1\n", pg_ok("psql -X -At -c 'select 1'"))

    pg_ok("stop")
    assert.equals(3, status_code())
    assert.same({}, cluster_processes())
  end)

  it("rejects an unknown command and a bad name", function()
    local ok, rc = pg("frobnicate")
    assert.is_false(ok)
    assert.equals(2, rc)
    ok = H.sh(H.shquote(SCRIPT) .. " --name '../x' url")
    assert.is_false(ok)
  end)
end)
