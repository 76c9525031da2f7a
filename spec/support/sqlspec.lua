-- Spec helper for the SQL plugin: a private database per spec on the test
-- cluster (DAZ_TEST_PG_URL), psql against it, and daz started with test
-- plugins pointed at that database.
local h = require("helpers")
local daz = require("daz")

local M = {}

-- Every test plugin source starts with this: `result(key, value)` logs a
-- "RESULT <key> <json>" line the spec reads.
M.PRELUDE = 'local cjson = require("cjson")\n' ..
  'local function result(k, v) daz.log.info("RESULT %s %s", k, cjson.encode(v)) end\n'

local function psql_bin()
  local _, _, out = h.sh("ls -d /usr/lib/postgresql/*/bin/psql | sort -V | tail -n1")
  return (out:match("[^\n]+"))
end
M.psql_path = psql_bin()

function M.base_url()
  local url = os.getenv("DAZ_TEST_PG_URL")
  assert(url and url ~= "", "DAZ_TEST_PG_URL is not set (scripts/test sets it; or scripts/pg-local --name X url)")
  return url
end

-- The URL of database `name` on the same server as `url`.
function M.url_for(url, name)
  local out = url:gsub("^(postgresql://[^/]*/)[^?]*", "%1" .. name)
  return out
end

-- Runs SQL through psql; returns the unaligned output (raises on failure).
function M.psql(url, sql)
  local ok, rc, out = h.sh(h.shquote(M.psql_path) .. " -X -q -At -v ON_ERROR_STOP=1 " .. h.shquote(url) ..
    " -c " .. h.shquote(sql))
  assert(ok, ("psql failed (%s): %s\n%s"):format(tostring(rc), sql, out))
  return out
end

-- Runs SQL against the test database (DAZ_TEST_PG_URL, the one bin/daz uses
-- in specs); returns the output without trailing white space.
function M.test(sql)
  return (M.psql(assert(os.getenv("DAZ_TEST_PG_URL"), "DAZ_TEST_PG_URL is not set"), sql):gsub("%s+$", ""))
end

-- One value (first line).
function M.scalar(url, sql)
  return (M.psql(url, sql):match("^[^\n]*"))
end

-- A fresh database; returns its name and URL.
function M.create_db(base)
  base = base or M.base_url()
  local name = ("daz_spec_%d_%d"):format(os.time(), math.random(1, 1e9))
  M.psql(base, "CREATE DATABASE " .. name)
  return name, M.url_for(base, name)
end

function M.drop_db(name, base)
  base = base or M.base_url()
  pcall(M.psql, base, "DROP DATABASE IF EXISTS " .. name .. " WITH (FORCE)")
end

-- Start daz against `url` with the given plugins (name -> source).
-- opts.database: extra core.database fields (Lua text); opts.config: extra
-- top-level config (Lua text); opts.env, opts.args.
function M.start(url, plugins, opts)
  opts = opts or {}
  local dir = daz.plugin_dir(plugins or {})
  local config = ("return { plugin_dirs = { %q }, core = { database = { url = %q, %s } }, %s }")
    :format(dir, url, opts.database or "flush_ms = 50", opts.config or "")
  local p = daz.start({ config = config, env = opts.env, args = opts.args })
  p.plugin_dir = dir
  return p
end

-- The latest RESULT <key> line, decoded, or nil.
function M.latest(p, key)
  local cjson = require("cjson")
  local lines = p.logs("^RESULT " .. key .. " ")
  local l = lines[#lines]
  return l and cjson.decode(l.msg:sub(#("RESULT " .. key .. " ") + 1))
end

-- A copy of the checkout's sql/ migrations in a fresh directory, plus extra
-- files (name -> SQL text).
function M.migrations(extra)
  local dir = h.tmpdir()
  h.sh("cp " .. h.shquote(h.root) .. "/sql/*.sql " .. h.shquote(dir) .. "/")
  for name, text in pairs(extra or {}) do h.write_file(dir .. "/" .. name, text) end
  return dir
end

return M
