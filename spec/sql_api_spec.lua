-- The SQL plugin's query side through the real bin/daz and a real
-- PostgreSQL: db:query / db:exec / db:batch from a plugin, the type mapping,
-- SQL errors with SQLSTATE, parameters stored verbatim, and the bus
-- requests sql.query / sql.exec / sql.batch.
local h = require("helpers")
local S = require("sqlspec")

describe("SQL plugin: queries", function()
  local dbname, url, p

  setup(function()
    dbname, url = S.create_db()
  end)

  teardown(function()
    S.drop_db(dbname)
  end)

  after_each(function()
    if p and p.running() then assert.equals(0, p.stop_clean()) end
    p = nil
    h.cleanup_tmp()
  end)

  it("round-trips query, exec and batch with the documented type mapping", function()
    p = S.start(url, { types = S.PRELUDE .. [[
      local P = { name = "types" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(1, function()
          local r = {}
          local rows, err = db:query(table.concat({
            "SELECT 42::int2 AS i2, 2147483647::int4 AS i4, 9007199254740993::int8 AS i8,",
            "1.25::float8 AS f8, 0.5::float4 AS f4,",
            "12.50::numeric AS small_numeric, 123456789012345678901234.5::numeric AS big_numeric,",
            "7::numeric AS whole_numeric, true AS yes, false AS no, NULL::text AS nothing,",
            "'{\"a\": [1, 2, {\"b\": null}]}'::jsonb AS jb, '[1, \"x\"]'::json AS js,",
            "'2024-03-01 12:34:56.789+00'::timestamptz AS ts, 'infinity'::timestamptz AS forever,",
            "'héllo'::text AS txt, '2024-03-01'::date AS day" }, " "))
          r.err = err and tostring(err)
          local row = rows[1]
          r.n = #rows
          r.i2, r.i4 = row.i2, row.i4
          r.int_types = { math.type(row.i2), math.type(row.i4), math.type(row.i8) }
          r.i8_exact = row.i8 == 9007199254740993
          r.f8, r.f4 = row.f8, row.f4
          r.small_numeric, r.big_numeric = row.small_numeric, row.big_numeric
          r.whole_numeric_type = math.type(row.whole_numeric)
          r.yes, r.no = row.yes, row.no
          r.null_is_db_null = row.nothing == db.null
          r.null_is_cjson_null = row.nothing == cjson.null
          r.jb_a2, r.jb_b_null = row.jb.a[2], row.jb.a[3].b == db.null
          r.js = row.js
          r.ts = row.ts
          r.forever = row.forever == math.huge
          r.txt, r.day = row.txt, row.day
          r.empty = #db:query("SELECT 1 WHERE false")

          assert(db:exec("CREATE TABLE daz_spec_t (id serial PRIMARY KEY, name text, n int, doc jsonb, at timestamptz)") == 0)
          r.inserted = db:exec("INSERT INTO daz_spec_t (name, n, doc, at) VALUES ($1, $2, $3, to_timestamp($4)), ($5, $6, $7, $8)",
            "a", 1, { k = "v", list = { 1, 2 } }, 1700000000.5, "b", nil, db.null, db.null)
          r.updated = db:exec("UPDATE daz_spec_t SET n = n + $1 WHERE name = $2", 10, "a")
          local back = db:query("SELECT name, n, doc, at FROM daz_spec_t ORDER BY id")
          r.back = { back[1].name, back[1].n, back[1].doc.k, back[1].doc.list[2], back[1].at,
                     back[2].n == db.null, back[2].doc == db.null }
          local b, berr = db:batch({
            { "INSERT INTO daz_spec_t (name, n) VALUES ($1, $2)", "c", 3 },
            { sql = "INSERT INTO daz_spec_t (name, n) VALUES ($1, $2)", params = { "d", 4 } },
            "SELECT count(*) AS c FROM daz_spec_t",
          })
          r.batch_err = berr and tostring(berr)
          r.batch = { b[1].count, b[2].count, b[3].rows[1].c, #b[1].rows }
          r.param_types = db:query("SELECT $1::int + 1 AS i, $2::float8 * 2 AS f, $3::bool AS b, $4::text AS s",
            41, 1.5, true, "x")[1]
          result("types", r)
        end)
      end
      return P ]] })
    local r = p.wait_result("types", 20)
    assert.is_nil(r.err)
    assert.equals(1, r.n)
    assert.same({ 42, 2147483647 }, { r.i2, r.i4 })
    assert.same({ "integer", "integer", "integer" }, r.int_types)
    assert.is_true(r.i8_exact)
    assert.equals(1.25, r.f8)
    assert.equals(0.5, r.f4)
    assert.equals(12.5, r.small_numeric)
    assert.equals("123456789012345678901234.5", r.big_numeric)
    assert.equals("integer", r.whole_numeric_type)
    assert.is_true(r.yes)
    assert.is_false(r.no)
    assert.is_true(r.null_is_db_null)
    assert.is_true(r.null_is_cjson_null)
    assert.equals(2, r.jb_a2)
    assert.is_true(r.jb_b_null)
    assert.same({ 1, "x" }, r.js)
    assert.near(1709296496.789, r.ts, 1e-6)
    assert.is_true(r.forever)
    assert.equals("héllo", r.txt)
    assert.equals("2024-03-01", r.day)
    assert.equals(0, r.empty)
    assert.equals(2, r.inserted)
    assert.equals(1, r.updated)
    assert.same({ "a", 11, "v", 2, 1700000000.5, true, true }, r.back)
    assert.is_nil(r.batch_err)
    assert.same({ 1, 1, 4, 0 }, r.batch)
    assert.same({ i = 42, f = 3.0, b = true, s = "x" }, r.param_types)
  end)

  it("returns nil and an error with SQLSTATE; a failed batch changes nothing", function()
    p = S.start(url, { errs = S.PRELUDE .. [[
      local P = { name = "errs" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(1, function()
          local r = {}
          local rows, err = db:query("SELECT * FROM no_such_table")
          r.rows = rows
          r.sqlstate, r.message, r.text = err.sqlstate, err.message, tostring(err)
          local n, err2 = db:exec("SELECT 1/0")
          r.n, r.div = n, err2.sqlstate
          local _, err3 = db:query("SELEC 1")
          r.syntax = err3.sqlstate
          db:exec("CREATE TABLE daz_spec_batch (k int PRIMARY KEY)")
          local b, err4 = db:batch({ { "INSERT INTO daz_spec_batch VALUES ($1)", 1 },
                                     { "INSERT INTO daz_spec_batch VALUES ($1)", 1 } })
          r.batch, r.batch_state = b, err4 and err4.sqlstate
          r.after_batch = db:query("SELECT count(*) AS c FROM daz_spec_batch")[1].c
          -- misuse raises instead of returning
          local ok, raised = pcall(db.query, db, "SELECT $1", function() end)
          r.misuse_raised, r.misuse = not ok, tostring(raised)
          result("errs", r)
        end)
      end
      return P ]] })
    local r = p.wait_result("errs", 20)
    assert.is_nil(r.rows)
    assert.equals("42P01", r.sqlstate)
    assert.matches('relation "no_such_table" does not exist', r.message, 1, true)
    assert.matches("^ERROR 42P01: ", r.text)
    assert.is_nil(r.n)
    assert.equals("22012", r.div)
    assert.equals("42601", r.syntax)
    assert.is_nil(r.batch)
    assert.equals("23505", r.batch_state)
    assert.equals(0, r.after_batch)
    assert.is_true(r.misuse_raised)
    assert.matches("cannot be a query parameter", r.misuse, 1, true)
  end)

  it("stores parameters with quotes and SQL in them verbatim", function()
    local nasty = { "O'Brien", "'; DROP TABLE daz_spec_victim; --", 'say "hi" \\ back\\slash',
      "tab\there\nnewline", "$1 $2 %s %d", "ünïcödé 😀", "" }
    local lua_list = {}
    for i, s in ipairs(nasty) do lua_list[i] = ("%q"):format(s) end
    p = S.start(url, { quotes = S.PRELUDE .. [[
      local P = { name = "quotes" }
      local nasty = { ]] .. table.concat(lua_list, ", ") .. [[ }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(1, function()
          db:exec("CREATE TABLE daz_spec_victim (id serial PRIMARY KEY, s text)")
          for _, s in ipairs(nasty) do
            assert(db:exec("INSERT INTO daz_spec_victim (s) VALUES ($1)", s) == 1)
          end
          local back = {}
          for i, row in ipairs(db:query("SELECT s FROM daz_spec_victim ORDER BY id")) do back[i] = row.s end
          local found = db:query("SELECT id FROM daz_spec_victim WHERE s = $1", nasty[2])
          result("quotes", { back = back, found = #found })
        end)
      end
      return P ]] })
    local r = p.wait_result("quotes", 20)
    assert.same(nasty, r.back)
    assert.equals(1, r.found)
    -- the table is still there, with every row, as psql sees it
    assert.equals(tostring(#nasty), S.scalar(url, "SELECT count(*) FROM daz_spec_victim"))
    assert.equals(nasty[2], S.scalar(url, "SELECT s FROM daz_spec_victim WHERE id = 2"))
  end)

  it("answers sql.query, sql.exec and sql.batch requests on the bus", function()
    p = S.start(url, { busreq = S.PRELUDE .. [[
      local P = { name = "busreq" }
      function P:init(bus) self.bus = bus end
      function P:start()
        self.bus:after(1, function()
          local r = {}
          local v = self.bus:request("sql.exec", { sql = "CREATE TABLE daz_spec_bus (id serial PRIMARY KEY, s text, doc jsonb)" })
          r.create = v.count
          v = self.bus:request("sql.exec", { sql = "INSERT INTO daz_spec_bus (s, doc) VALUES ($1, $2), ($3, $4)",
            params = { "it's", { a = 1 }, "x", cjson.null } })
          r.insert = v.count
          v = self.bus:request("sql.query", { sql = "SELECT s, doc FROM daz_spec_bus WHERE s = $1", params = { "it's" } })
          r.rows = v.rows
          v = self.bus:request("sql.batch", { statements = {
            { sql = "INSERT INTO daz_spec_bus (s) VALUES ($1)", params = { "y" } },
            { sql = "SELECT count(*) AS c FROM daz_spec_bus" } } })
          r.batch = { v.results[1].count, v.results[2].rows[1].c }
          local none, err = self.bus:request("sql.query", { sql = "SELECT * FROM nope" })
          r.err = err
          none, err = self.bus:request("sql.query", { nope = true })
          r.bad = err
          result("busreq", r)
        end)
      end
      return P ]] })
    local r = p.wait_result("busreq", 20)
    assert.equals(0, r.create)
    assert.equals(2, r.insert)
    assert.same({ { s = "it's", doc = { a = 1 } } }, r.rows)
    assert.same({ 1, 3 }, r.batch)
    assert.matches("^ERROR 42P01: ", r.err)
    assert.matches("bad sql.query request", r.bad, 1, true)
  end)
end)
