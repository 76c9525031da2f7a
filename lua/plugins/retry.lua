-- retry: a persistent retry queue. Whatever fails an operation publishes
-- `<something>.failed` with this payload (README "Retry"):
--   { operation = "cytube_command",      -- names the policy
--     event_type = "cytube.send",        -- replayed as a bus request of this type
--     payload = { room = ..., msg = ... },
--     error = "room down (connecting)",
--     correlation_id = "...",            -- unique per operation (deduplicates)
--     attempt = 1, priority = 0..3 }     -- optional
-- The row lives in daz_retry_queue, so schedules survive restarts. Due rows
-- are taken highest priority first with FOR UPDATE SKIP LOCKED (two Daz
-- processes never take the same row), replayed, and completed, rescheduled
-- with backoff and jitter, or dead-lettered after the policy's last attempt.
local commands = require("commands")
local cjson = require("cjson")

local S = require("core.schema")

local P = { name = "retry" } -- commands.register waits for eventfilter by itself

local POLICY = S.record({
  max_attempts = S.int { default = 5, check = S.range(1) },    -- tries in all, the original failure included
  base_ms = S.int { default = 5000, check = S.range(0) },      -- first delay
  max_ms = S.int { default = 300000, check = S.range(0) },     -- longest delay
  multiplier = S.num { default = 2, check = S.range(0) },
  jitter = S.num { default = 0.25, check = S.range(0) },       -- +-25 %
  timeout_ms = S.int { default = 10000, check = S.range(0) },  -- per attempt; a processing row is taken back after it
})

P.settings = {
  policies = S.map(POLICY, { default = {} }),                   -- by operation; "default" for the others
  poll_ms = S.int { default = 1000, check = S.range(10) },      -- how often due retries are looked for
  batch = S.int { default = 20, check = S.range(1) },           -- due retries taken per poll
  retention_hours = S.num { default = 24, check = S.range(0) }, -- finished rows are kept this long
  admin_rank = S.num { default = 3 },                           -- CyTube rank the retry command needs
}

-- Delay before attempt n+1 after n attempts, with jitter; exported for specs.
function P.backoff_ms(policy, attempts, rand)
  rand = rand or math.random
  local d = policy.base_ms * policy.multiplier ^ math.max(0, attempts - 1)
  d = math.min(d, policy.max_ms)
  local j = policy.jitter * (2 * rand() - 1)
  return math.max(0, math.floor(d * (1 + j)))
end

function P:init(bus, cfg)
  self.bus, self.cfg = bus, cfg
  self.policies = {}
  for name, p in pairs(cfg.policies) do self.policies[name] = p end
  -- The settings are checked already: the defaults cannot fail.
  self.policies.default = self.policies.default or S.check(POLICY, {}, "plugins.retry.policies.default")
  self.poll_ms, self.batch = cfg.poll_ms, cfg.batch
  self.retention_hours, self.admin_rank = cfg.retention_hours, cfg.admin_rank
  self.counts = {}
  self.outcomes = { completed = 0, rescheduled = 0, dead_letter = 0, stored = 0, store_errors = 0 }
end

function P:policy(operation)
  return self.policies[operation] or self.policies.default
end

local function history(id, attempt, outcome, err, ms)
  return db:exec([[INSERT INTO daz_retry_history (retry_id, attempt, outcome, error, duration_ms)
                   VALUES ($1, $2, $3, $4, $5)]], id, attempt, outcome, err, ms)
end

-- A `.failed` event: store it (once per correlation id) with its first delay.
function P:store(ev)
  local d = ev.data
  if type(d) ~= "table" or type(d.event_type) ~= "string" or d.payload == nil or d.correlation_id == nil then
    daz.log.warn("%s: not a retryable failure (needs event_type, payload, correlation_id)", ev.type)
    return
  end
  local op = type(d.operation) == "string" and d.operation or ev.type:gsub("%.failed$", "")
  local policy = self:policy(op)
  local attempts = math.tointeger(d.attempt) or 1
  local prio = math.tointeger(d.priority) or 0
  local delay = P.backoff_ms(policy, attempts)
  local status = attempts >= policy.max_attempts and "dead_letter" or "pending"
  local rows, err = db:query([[
    INSERT INTO daz_retry_queue (operation, event_type, payload, correlation_id, status, priority, attempts,
                                 max_attempts, next_attempt_at, last_error)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9::float8 / 1000), $10)
    ON CONFLICT (correlation_id) DO NOTHING
    RETURNING id]], op, d.event_type, d.payload, tostring(d.correlation_id), status, prio, attempts,
    policy.max_attempts, delay, tostring(d.error or ""))
  if not rows then
    self.outcomes.store_errors = self.outcomes.store_errors + 1
    daz.log.error("cannot store %s: %s", ev.type, tostring(err))
    return
  end
  if rows[1] then
    self.outcomes.stored = self.outcomes.stored + 1
    history(rows[1].id, attempts, "failed", tostring(d.error or ""), nil)
    daz.log.info("stored %s (%s) as #%d, next try in %d ms", d.event_type, op, rows[1].id, delay)
  end
end

-- Take due rows (and rows stuck in processing past their lock) and replay them.
function P:poll()
  local took, err = db:query([[
    UPDATE daz_retry_queue q SET status = 'processing', attempts = q.attempts + 1, updated_at = now(),
           locked_until = now() + make_interval(secs => $2::float8 / 1000)
    WHERE q.id IN (
      SELECT id FROM daz_retry_queue
      WHERE (status = 'pending' AND next_attempt_at <= now())
         OR (status = 'processing' AND locked_until < now())
      ORDER BY priority DESC, next_attempt_at, id
      LIMIT $1
      FOR UPDATE SKIP LOCKED)
    RETURNING id, operation, event_type, payload, attempts, max_attempts, priority]],
    self.batch, self:max_timeout())
  if not took then
    daz.log.warn("cannot poll the retry queue: %s", tostring(err))
    return
  end
  table.sort(took, function(a, b)
    if a.priority ~= b.priority then return a.priority > b.priority end
    return a.id < b.id
  end)
  for _, row in ipairs(took) do self:attempt(row) end
end

function P:max_timeout()
  local m = 0
  for _, p in pairs(self.policies) do m = math.max(m, p.timeout_ms) end
  return m
end

function P:attempt(row)
  local policy = self:policy(row.operation)
  local t0 = daz.uptime()
  local _, err = self.bus:request(row.event_type, row.payload, { timeout = policy.timeout_ms })
  local ms = (daz.uptime() - t0) * 1000
  if not err then
    db:exec("UPDATE daz_retry_queue SET status = 'completed', locked_until = NULL, updated_at = now() WHERE id = $1",
      row.id)
    history(row.id, row.attempts, "ok", nil, ms)
    self.outcomes.completed = self.outcomes.completed + 1
    daz.log.info("#%d %s delivered on attempt %d", row.id, row.event_type, row.attempts)
    return
  end
  err = tostring(err)
  if row.attempts >= row.max_attempts then
    db:exec([[UPDATE daz_retry_queue SET status = 'dead_letter', locked_until = NULL, last_error = $2,
              updated_at = now() WHERE id = $1]], row.id, err)
    history(row.id, row.attempts, "dead_letter", err, ms)
    self.outcomes.dead_letter = self.outcomes.dead_letter + 1
    daz.log.warn("#%d %s dead-lettered after %d attempts: %s", row.id, row.event_type, row.attempts, err)
  else
    local delay = P.backoff_ms(policy, row.attempts)
    db:exec([[UPDATE daz_retry_queue SET status = 'pending', locked_until = NULL, last_error = $2,
              next_attempt_at = now() + make_interval(secs => $3::float8 / 1000), updated_at = now()
              WHERE id = $1]], row.id, err, delay)
    history(row.id, row.attempts, err == "timeout" and "timeout" or "error", err, ms)
    self.outcomes.rescheduled = self.outcomes.rescheduled + 1
  end
end

function P:purge()
  db:exec([[DELETE FROM daz_retry_queue WHERE status = 'completed'
            AND updated_at < now() - make_interval(hours => $1::int)]], math.floor(self.retention_hours))
end

function P:refresh_counts()
  local rows = db:query("SELECT status, count(*)::int AS n FROM daz_retry_queue GROUP BY status")
  if rows then
    local c = { pending = 0, processing = 0, completed = 0, failed = 0, dead_letter = 0 }
    for _, r in ipairs(rows) do c[r.status] = r.n end
    self.counts = c
  end
end

-- Admin commands: retry, dlq [list|replay <id>|drop <id>].
function P:cmd_retry()
  local rows, err = db:query([[SELECT status, count(*)::int AS n,
      min(next_attempt_at) FILTER (WHERE status = 'pending') AS due FROM daz_retry_queue GROUP BY status]])
  if not rows then return nil, tostring(err) end
  local parts, due = {}, nil
  for _, r in ipairs(rows) do
    parts[#parts + 1] = ("%s %d"):format(r.status, r.n)
    if type(r.due) == "number" then due = r.due end
  end
  table.sort(parts)
  local text = #parts > 0 and table.concat(parts, ", ") or "the retry queue is empty"
  if due then text = text .. (", next due in %ds"):format(math.max(0, math.floor(due - daz.now()))) end
  return text
end

function P:cmd_dlq(cmd)
  local sub, id = cmd.args[1], math.tointeger(tonumber(cmd.args[2] or ""))
  if sub == nil or sub == "list" then
    local rows, err = db:query([[SELECT id, event_type, attempts, last_error FROM daz_retry_queue
                                 WHERE status = 'dead_letter' ORDER BY id DESC LIMIT 5]])
    if not rows then return nil, tostring(err) end
    if #rows == 0 then return "no dead letters" end
    local out = {}
    for _, r in ipairs(rows) do
      out[#out + 1] = ("#%d %s (%d tries: %s)"):format(r.id, r.event_type, r.attempts, tostring(r.last_error):sub(1, 60))
    end
    return table.concat(out, "; ")
  end
  if (sub == "replay" or sub == "drop") and id then
    local n, err
    if sub == "replay" then
      n, err = db:exec([[UPDATE daz_retry_queue SET status = 'pending', attempts = 0, next_attempt_at = now(),
                         updated_at = now() WHERE id = $1 AND status = 'dead_letter']], id)
    else
      n, err = db:exec("DELETE FROM daz_retry_queue WHERE id = $1 AND status = 'dead_letter'", id)
    end
    if not n then return nil, tostring(err) end
    if n == 0 then return ("no dead letter #%d"):format(id) end
    return sub == "replay" and ("#%d queued again"):format(id) or ("#%d dropped"):format(id)
  end
  return nil, "usage: dlq [list | replay <id> | drop <id>]"
end

function P:start()
  self.bus:subscribe("*.failed", function(ev) self:store(ev) end)
  self.bus:every(self.poll_ms, function()
    self:poll()
    self:refresh_counts()
  end)
  self.bus:every(3600 * 1000, function() self:purge() end)
  commands.register(self.bus, { plugin = "retry", name = "retry", description = "the retry queue at a glance",
    usage = "retry", min_rank = self.admin_rank }, function() return self:cmd_retry() end, daz.log)
  commands.register(self.bus, { plugin = "retry", name = "dlq", description = "dead letters: list, replay or drop",
    usage = "dlq [list | replay <id> | drop <id>]", min_rank = self.admin_rank },
    function(cmd) return self:cmd_dlq(cmd) end, daz.log)
end

function P:status()
  local metrics = {}
  for status, n in pairs(self.counts) do
    metrics[#metrics + 1] = { name = "daz_retry_queue_size", type = "gauge", help = "Rows in the retry queue, by status.",
      labels = { status = status }, value = n }
  end
  for outcome, n in pairs(self.outcomes) do
    metrics[#metrics + 1] = { name = "daz_retry_outcomes_total", type = "counter",
      help = "What the retry plugin did, by outcome.", labels = { outcome = outcome }, value = n }
  end
  return { queue = self.counts, outcomes = self.outcomes, metrics = metrics }
end

function P:config() return self.cfg end

return P
