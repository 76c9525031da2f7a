-- Migrations through the real bin/daz and PostgreSQL: applied once in
-- order and recorded with their SHA-256, skipped when applied, a changed
-- applied file stops the start, and two processes starting together both
-- come up with every migration applied exactly once.
local h = require("helpers")
local S = require("sqlspec")
local daz = require("daz")

local function sha256(path)
  local _, _, out = h.sh("sha256sum " .. h.shquote(path))
  return out:match("^(%x+)")
end

describe("SQL plugin: migrations", function()
  local dbname, url, procs

  before_each(function()
    dbname, url = S.create_db()
    procs = {}
  end)

  after_each(function()
    for _, p in ipairs(procs) do
      if p.running() then p.stop_clean() end
    end
    S.drop_db(dbname)
    h.cleanup_tmp()
  end)

  local function start(dir)
    local p = S.start(url, {}, { database = ("migrations_dir = %q"):format(dir) })
    procs[#procs + 1] = p
    return p
  end

  it("applies each file once, in order, records its checksum, and skips it on the next start", function()
    local dir = S.migrations({
      ["900_spec_first.sql"] = "CREATE TABLE daz_spec_order (step int);\nINSERT INTO daz_spec_order VALUES (1);\n",
      ["0901_spec_second.sql"] = "INSERT INTO daz_spec_order SELECT max(step) + 1 FROM daz_spec_order;\n",
    })
    local p = start(dir)
    p.wait_log("^ready$", 30)
    assert.equals(1, #p.logs("^applied 900_spec_first.sql"))
    assert.equals(1, #p.logs("^applied 0901_spec_second.sql"))
    assert.equals("1\n2\n", S.psql(url, "SELECT step FROM daz_spec_order ORDER BY step"))
    local recorded = S.psql(url, "SELECT name || ' ' || checksum FROM daz_schema_migrations ORDER BY applied_at, name")
    assert.matches("001_core.sql " .. sha256(h.root .. "/sql/001_core.sql"), recorded, 1, true)
    assert.matches("900_spec_first.sql " .. sha256(dir .. "/900_spec_first.sql"), recorded, 1, true)
    assert.matches("0901_spec_second.sql " .. sha256(dir .. "/0901_spec_second.sql"), recorded, 1, true)
    for _, t in ipairs({ "daz_core_events", "daz_chat_log", "daz_user_activity", "daz_private_messages",
                         "daz_plugin_stats" }) do
      assert.equals(t, S.scalar(url, ("SELECT to_regclass('%s')"):format(t)))
    end
    assert.equals(0, p.stop_clean())

    p = start(dir)
    p.wait_log("^ready$", 30)
    assert.equals(0, #p.logs("^applied "))
    assert.equals(1, #p.logs("schema up to date"))
    assert.equals("1\n2\n", S.psql(url, "SELECT step FROM daz_spec_order ORDER BY step"))
    assert.equals(0, p.stop_clean())
  end)

  it("refuses to start when an applied migration was changed, naming the file", function()
    local dir = S.migrations({ ["900_spec_edit.sql"] = "CREATE TABLE daz_spec_edit (a int);\n" })
    local p = start(dir)
    p.wait_log("^ready$", 30)
    assert.equals(0, p.stop_clean())

    h.write_file(dir .. "/900_spec_edit.sql", "CREATE TABLE daz_spec_edit (a int, b int);\n")
    p = start(dir)
    assert.equals(1, p.wait_exit(30))
    assert.equals(1, #p.logs("900_spec_edit.sql was changed after it was applied"))
    assert.equals(0, #p.logs("^ready$"))
    assert.is_nil(daz.sanitizer_reports(p.pid))
    -- nothing of the edit was applied
    assert.equals("0", S.scalar(url,
      "SELECT count(*) FROM information_schema.columns WHERE table_name = 'daz_spec_edit' AND column_name = 'b'"))
  end)

  it("stops the start when a migration fails, and applies nothing of it", function()
    local dir = S.migrations({ ["900_spec_broken.sql"] = "CREATE TABLE daz_spec_half (a int);\nSELEC 1;\n" })
    local p = start(dir)
    assert.equals(1, p.wait_exit(30))
    assert.equals(1, #p.logs("900_spec_broken.sql failed: 42601"))
    assert.equals("", S.scalar(url, "SELECT to_regclass('daz_spec_half')"))
    assert.equals("0", S.scalar(url, "SELECT count(*) FROM daz_schema_migrations WHERE name = '900_spec_broken.sql'"))
  end)

  it("lets two processes that start together both come up, applying each migration once", function()
    local dir = S.migrations({
      ["900_spec_slow.sql"] = "CREATE TABLE daz_spec_once (a int);\nSELECT pg_sleep(0.5);\nINSERT INTO daz_spec_once VALUES (1);\n",
    })
    local a, b = start(dir), start(dir)
    a.wait_log("^ready$", 30)
    b.wait_log("^ready$", 30)
    assert.equals(1, #a.logs("^applied 900_spec_slow.sql") + #b.logs("^applied 900_spec_slow.sql"))
    assert.equals("1", S.scalar(url, "SELECT count(*) FROM daz_spec_once"))
    assert.equals("1", S.scalar(url, "SELECT count(*) FROM daz_schema_migrations WHERE name = '900_spec_slow.sql'"))
    assert.equals(0, a.stop_clean())
    assert.equals(0, b.stop_clean())
  end)
end)
