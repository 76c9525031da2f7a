-- Start-up errors an operator meets: each is named once, with what to do,
-- and nothing after it looks like a second failure.
local h = require("helpers")
local daz = require("daz")

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
