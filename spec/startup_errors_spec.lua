-- Start-up errors an operator meets: each is named once, with what to do,
-- and nothing after it looks like a second failure.
local h = require("helpers")
local daz = require("daz")
local sql = require("sqlspec")

-- Start daz and wait for it to give up; returns the process.
local function failed_start(opts)
  local p = daz.start(opts)
  finally(function() p.stop() end)
  h.wait_until(function() return not p.running() end, 20, "daz to give up")
  return p
end

describe("start-up errors", function()
  after_each(h.cleanup_tmp)

  it("stops on a missing migrations folder, naming it and the working directory", function()
    local p = failed_start({ config = [[return { core = { database = { migrations_dir = "no-such-sql" } } }]] })
    assert.equals(1, p.exit_code(), p.output())
    local line = p.wait_log("migrations_dir")
    assert.truthy(line.msg:find("no-such-sql", 1, true), line.msg)
    assert.truthy(line.msg:find("working directory " .. h.root, 1, true), line.msg)
    assert.equals(0, #p.logs("schema up to date"), p.output())
    assert.is_nil(daz.sanitizer_reports(p.pid))
  end)

  -- What only looks like a second failure: a save or a load the closing
  -- database pool refused.
  local function assert_one_failure(p)
    local out = p.output()
    assert.equals(1, p.exit_code(), out)
    assert.equals(1, #p.logs("start failed: .*BOOM"), out)
    for _, noise in ipairs({ "database pool closed", "cannot load saved backoff", "sql.exec failed" }) do
      assert.is_nil(out:find(noise, 1, true), noise .. " logged after the real failure:\n" .. out)
    end
    assert.is_nil(daz.sanitizer_reports(p.pid))
  end

  local BOOM = [[return { name = "boom", start = function() error("BOOM") end }]]

  it("logs a plugin's failed start and nothing that looks like a second failure", function()
    -- A room that fails at once: its backoff changes before the database is ready.
    local dir = daz.plugin_dir({ boom = BOOM })
    local p = failed_start({ config = ([[return { plugin_dirs = { %q },
      core = { rooms = { { channel = "deadroom", server = "http://127.0.0.1:1" } } } }]]):format(dir) })
    assert_one_failure(p)

    -- A fresh database: the first backoff load fails (no table yet) and waits
    -- for the migrations.
    local dbname, url = sql.create_db()
    finally(function() sql.drop_db(dbname) end)
    p = failed_start({ config = ([[return { plugin_dirs = { %q }, core = { database = { url = %q },
      rooms = { { channel = "deadroom", server = "http://127.0.0.1:1" } } } }]]):format(dir, url) })
    assert_one_failure(p)
  end)

  it("stops on an empty migrations folder", function()
    local dir = h.tmpdir()
    h.write_file(dir .. "/README", "not a migration")
    local p = failed_start({ config = ([[return { core = { database = { migrations_dir = %q } } }]]):format(dir) })
    assert.equals(1, p.exit_code(), p.output())
    local line = p.wait_log("migrations_dir")
    assert.truthy(line.msg:find(dir, 1, true), line.msg)
    assert.truthy(line.msg:find("no migrations", 1, true), line.msg)
    assert.equals(0, #p.logs("schema up to date"), p.output())
  end)
end)
