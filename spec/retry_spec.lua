-- lua/plugins/retry.lua: the persistent retry queue, against the real bus
-- and PostgreSQL. A test plugin plays the failing service ("spec.target"
-- requests): it fails a given number of times, then succeeds, and records
-- every delivery in a table so specs can count them.
local h = require("helpers")
local daz = require("daz")

local psql = require("sqlspec").test

local TARGET = [[
  local P = { name = "spec_target" }
  function P:init(bus, cfg) self.bus, self.fail_first = bus, cfg.fail_first or 0 end
  function P:start()
    local seen, delivered = {}, 0
    self.bus:subscribe("spec.target", function(ev)
      local key = tostring(ev.data.key)
      seen[key] = (seen[key] or 0) + 1
      if seen[key] <= self.fail_first then return ev:respond(nil, "not yet (" .. seen[key] .. ")") end
      -- Numbered as delivered: the concurrent inserts below may commit in any order.
      delivered = delivered + 1
      assert(db:exec("INSERT INTO spec_deliveries (key, pid, seq) VALUES ($1, $2, $3)", key,
        tostring(self.fail_first), delivered))
      ev:respond({ ok = true })
    end, { concurrent = true })
  end
  return P ]]

local TRIGGER = [[
  local P = { name = "spec_trigger" }
  function P:init(bus, cfg)
    bus:after(300, function()
      for _, f in ipairs(cfg.failures or {}) do bus:publish(f.type, f.data) end
    end)
  end
  return P ]]

local function lua_value(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      local key = type(k) == "number" and "" or (k .. " = ")
      parts[#parts + 1] = key .. lua_value(x)
    end
    return "{ " .. table.concat(parts, ", ") .. " }"
  end
  return type(v) == "string" and ("%q"):format(v) or tostring(v)
end

local function start(opts)
  local dir = daz.plugin_dir({ spec_target = TARGET, spec_trigger = TRIGGER })
  local plugins = {
    retry = { poll_ms = 50, policies = { spec = { base_ms = 100, max_ms = 400, max_attempts = opts.max_attempts or 3,
      timeout_ms = 500 } } },
    spec_target = { fail_first = opts.fail_first or 0 },
    spec_trigger = { failures = opts.failures or {} },
  }
  return daz.start({ config = ("return { plugin_dirs = { 'lua/plugins', %q }, plugins = %s }")
    :format(dir, lua_value(plugins)) })
end

local function failure(key, prio)
  return { type = "spec.op.failed", data = { operation = "spec", event_type = "spec.target",
    payload = { key = key }, error = "down", correlation_id = "spec-" .. key, priority = prio or 0 } }
end

describe("retry", function()
  local procs = {}
  local function track(p) procs[#procs + 1] = p; return p end
  after_each(function()
    for _, p in ipairs(procs) do if p.running() then p.stop_clean() end end
    procs = {}
    h.cleanup_tmp()
  end)

  -- Tables exist once a daz has migrated; start each spec from empty ones.
  before_each(function()
    local p = track(start({}))
    p.wait_log("^ready$", 20)
    p.stop_clean()
    psql("DROP TABLE IF EXISTS spec_deliveries; CREATE TABLE spec_deliveries (key text, pid text, seq int, at timestamptz DEFAULT now());" ..
      "TRUNCATE spec_deliveries; TRUNCATE daz_retry_queue CASCADE")
  end)

  it("computes backoff within the jitter bounds, capped", function()
    local P = dofile("lua/plugins/retry.lua")
    local pol = { base_ms = 1000, multiplier = 2, max_ms = 10000, jitter = 0.25 }
    assert.equals(750, P.backoff_ms(pol, 1, function() return 0 end))
    assert.equals(1250, P.backoff_ms(pol, 1, function() return 1 end))
    assert.equals(4000, P.backoff_ms(pol, 3, function() return 0.5 end))
    assert.equals(10000, P.backoff_ms(pol, 10, function() return 0.5 end))
    for n = 1, 6 do
      for _ = 1, 200 do
        local d = P.backoff_ms(pol, n)
        local nominal = math.min(1000 * 2 ^ (n - 1), 10000)
        assert.is_true(d >= nominal * 0.75 and d <= nominal * 1.25, ("attempt %d: %d ms"):format(n, d))
      end
    end
  end)

  it("stores a failure, retries it with backoff and delivers it exactly once", function()
    local p = track(start({ fail_first = 1, failures = { failure("a") } }))
    h.wait_until(function() return psql("SELECT status FROM daz_retry_queue WHERE correlation_id = 'spec-a'") == "completed" end,
      20, "the retried operation to complete")
    assert.equals("1", psql("SELECT count(*) FROM spec_deliveries WHERE key = 'a'"))
    -- the original failure, one failed retry, the successful one
    assert.equals("failed,error,ok", psql("SELECT string_agg(outcome, ',' ORDER BY id) FROM daz_retry_history"))
    assert.equals("3", psql("SELECT attempts FROM daz_retry_queue WHERE correlation_id = 'spec-a'"))
    -- a second .failed for the same operation is not stored twice
    assert.equals("1", psql("SELECT count(*) FROM daz_retry_queue"))
    p.stop_clean()
  end)

  it("dead-letters after the last attempt", function()
    track(start({ fail_first = 100, max_attempts = 3, failures = { failure("dead") } }))
    h.wait_until(function() return psql("SELECT status FROM daz_retry_queue WHERE correlation_id = 'spec-dead'") == "dead_letter" end,
      20, "a dead letter")
    assert.equals("3", psql("SELECT attempts FROM daz_retry_queue WHERE correlation_id = 'spec-dead'"))
    assert.equals("0", psql("SELECT count(*) FROM spec_deliveries"))
  end)

  it("takes due rows highest priority first and recovers a row stuck in processing", function()
    psql([[INSERT INTO daz_retry_queue (operation, event_type, payload, correlation_id, priority, max_attempts)
           VALUES ('spec', 'spec.target', '{"key":"low"}', 'low', 0, 3),
                  ('spec', 'spec.target', '{"key":"high"}', 'high', 3, 3),
                  ('spec', 'spec.target', '{"key":"mid"}', 'mid', 1, 3);
           INSERT INTO daz_retry_queue (operation, event_type, payload, correlation_id, status, locked_until, max_attempts)
           VALUES ('spec', 'spec.target', '{"key":"stuck"}', 'stuck', 'processing', now() - interval '1 minute', 3)]])
    track(start({}))
    h.wait_until(function() return psql("SELECT count(*) FROM spec_deliveries") == "4" end, 20, "four deliveries")
    local order = psql("SELECT string_agg(key, ',' ORDER BY seq) FROM spec_deliveries WHERE key <> 'stuck'")
    assert.equals("high,mid,low", order)
    assert.equals("completed", psql("SELECT status FROM daz_retry_queue WHERE correlation_id = 'stuck'"))
  end)

  it("survives a restart: the schedule lives in the table", function()
    local p = track(start({ fail_first = 100, failures = { failure("later") } }))
    h.wait_until(function() return psql("SELECT count(*) FROM daz_retry_queue") == "1" end, 20, "the stored failure")
    p.stop_clean()
    psql("UPDATE daz_retry_queue SET attempts = 1, status = 'pending', next_attempt_at = now()")
    track(start({ fail_first = 0 }))
    h.wait_until(function() return psql("SELECT status FROM daz_retry_queue") == "completed" end, 20, "delivery after restart")
    assert.equals("1", psql("SELECT count(*) FROM spec_deliveries"))
  end)

  it("retries a published sql.exec that failed on a transient error", function()
    psql("DROP TABLE IF EXISTS spec_exec; DROP SEQUENCE IF EXISTS spec_exec_seq;" ..
      "CREATE TABLE spec_exec (n bigint); CREATE SEQUENCE spec_exec_seq")
    -- The first run kills its own connection (nextval is not rolled back):
    -- a transient failure; the retry runs it again on a fresh connection.
    local dir = daz.plugin_dir({ spec_exec = [[
      local P = { name = "spec_exec" }
      function P:init(bus)
        bus:after(300, function()
          bus:publish("sql.exec", { sql = "INSERT INTO spec_exec (n) SELECT s.n FROM (SELECT nextval('spec_exec_seq') AS n) s " ..
            "WHERE CASE WHEN s.n = 1 THEN pg_terminate_backend(pg_backend_pid()) ELSE true END", params = {} })
        end)
      end
      return P ]] })
    track(daz.start({ config = ("return { plugin_dirs = { 'lua/plugins', %q }, plugins = { retry = { poll_ms = 50," ..
      " policies = { sql_exec = { base_ms = 100, max_ms = 200, max_attempts = 5 } } } } }"):format(dir) }))
    h.wait_until(function() return psql("SELECT count(*) FROM spec_exec") == "1" end, 20, "the retried insert")
    assert.equals("2", psql("SELECT n FROM spec_exec"))
    assert.equals("completed", psql("SELECT status FROM daz_retry_queue WHERE operation = 'sql_exec'"))
  end)

  it("answers the retry and dlq admin commands", function()
    psql([[INSERT INTO daz_retry_queue (operation, event_type, payload, correlation_id, status, attempts, max_attempts, last_error)
           VALUES ('spec', 'spec.target', '{"key":"dl"}', 'dl', 'dead_letter', 3, 3, 'gave up')]])
    local id = psql("SELECT id FROM daz_retry_queue WHERE correlation_id = 'dl'")
    -- Commands run as plugin.command.<name> requests (EventFilter's routing);
    -- the reply goes out as cytube.send, which this plugin captures.
    local dir = daz.plugin_dir({ spec_admin = daz.RESULT_PRELUDE .. ([[
      local P = { name = "spec_admin" }
      function P:init(bus)
        local replies = {}
        bus:subscribe("cytube.send", function(ev) replies[#replies + 1] = ev.data.msg end, { concurrent = true })
        local function run(name, args)
          local ok, err = bus:request("plugin.command." .. name, { command = name, args = args, user = "owner",
            rank = 5, room = "nowhere", pm = false }, { timeout = 5000, room = "nowhere" })
          daz.sleep(50)
          return replies[#replies], err
        end
        bus:after(1500, function()
          local r = {}
          r.retry = run("retry", {})
          r.list = run("dlq", {})
          r.replay = run("dlq", { "replay", "%s" })
          r.drop_missing = run("dlq", { "drop", "999999" })
          r.usage = run("dlq", { "bogus" })
          result("admin", r)
        end)
      end
      return P ]]):format(id) })
    local p = track(daz.start({ config = ("return { plugin_dirs = { 'lua/plugins', %q }, plugins = { retry = { poll_ms = 100000 } } }")
      :format(dir) }))
    local r = p.wait_result("admin", 20)
    assert.truthy(r.retry:find("dead_letter 1", 1, true), r.retry)
    assert.truthy(r.list:find("#" .. id .. " spec.target", 1, true), r.list)
    assert.equals("#" .. id .. " queued again", r.replay)
    assert.equals("no dead letter #999999", r.drop_missing)
    assert.truthy(r.usage:find("usage: dlq", 1, true), r.usage)
    assert.equals("pending", psql("SELECT status FROM daz_retry_queue WHERE id = " .. id))
  end)

  it("never delivers a row twice with two processes on one database", function()
    local values = {}
    for i = 1, 60 do
      values[#values + 1] = ("('spec', 'spec.target', '{\"key\":\"k%d\"}', 'two-%d', 3)"):format(i, i)
    end
    track(start({}))
    track(start({}))
    psql("INSERT INTO daz_retry_queue (operation, event_type, payload, correlation_id, max_attempts) VALUES "
      .. table.concat(values, ","))
    h.wait_until(function() return psql("SELECT count(*) FROM daz_retry_queue WHERE status = 'completed'") == "60" end,
      30, "all 60 completed")
    assert.equals("60", psql("SELECT count(*) FROM spec_deliveries"))
    assert.equals("60", psql("SELECT count(DISTINCT key) FROM spec_deliveries"))
  end)
end)
