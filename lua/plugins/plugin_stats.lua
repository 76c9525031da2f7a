-- plugin_stats: writes every plugin's performance (deliveries handled,
-- errors, handler time) to daz_plugin_stats once a minute, adding to what
-- earlier runs wrote, so the history survives restarts (issue 6).
local S = require("core.schema")

local P = { name = "plugin_stats" }

P.settings = {
  interval_ms = S.int { default = 60000, check = S.range(1000) },  -- how often the figures are written
}

local UPSERT = [[
  INSERT INTO daz_plugin_stats (plugin, stat, value, updated_at)
  VALUES ($1, 'performance', $2::jsonb, now())
  ON CONFLICT (plugin, stat) DO UPDATE SET
    value = jsonb_build_object(
      'handled', COALESCE((daz_plugin_stats.value->>'handled')::bigint, 0) + ($2::jsonb->>'handled')::bigint,
      'errors', COALESCE((daz_plugin_stats.value->>'errors')::bigint, 0) + ($2::jsonb->>'errors')::bigint,
      'handler_seconds', COALESCE((daz_plugin_stats.value->>'handler_seconds')::float8, 0)
                         + ($2::jsonb->>'handler_seconds')::float8,
      'last_error', COALESCE($2::jsonb->'last_error', daz_plugin_stats.value->'last_error')),
    updated_at = now()]]

function P:init(bus, config)
  self.bus = bus
  self.cfg = config
  self.interval_ms = config.interval_ms
  self.sent = {}   -- what earlier writes of this run covered, per plugin
  self.writes, self.failures = 0, 0
end

-- Writes the growth since the last write; a failed write is retried next time
-- (the totals are only advanced once the database took them).
function P:flush()
  for _, s in ipairs(daz.plugins.status()) do
    local prev = self.sent[s.name] or { handled = 0, errors = 0, handler_seconds = 0 }
    local delta = {
      handled = s.handled - prev.handled,
      errors = s.errors - prev.errors,
      handler_seconds = s.handler_seconds - prev.handler_seconds,
      last_error = s.last_error,
    }
    if delta.handled > 0 or delta.errors > 0 or not self.sent[s.name] then
      local _, err = db:exec(UPSERT, s.name, delta)
      if err then
        self.failures = self.failures + 1
        daz.log.warn("cannot write stats of %s: %s", s.name, tostring(err))
      else
        self.writes = self.writes + 1
        self.sent[s.name] = { handled = s.handled, errors = s.errors, handler_seconds = s.handler_seconds }
      end
    end
  end
end

function P:start()
  self.bus:every(self.interval_ms, function() self:flush() end)
end

function P:stop() end
function P:status() return { writes = self.writes, failures = self.failures } end
function P:config() return self.cfg end

return P
