-- commands: the client side of EventFilter's command registry.
--
--   local commands = require("commands")
--   commands.register(bus, {
--     plugin = "myplugin", name = "seen", aliases = { "lastseen" },
--     description = "when a user was last here", usage = "seen <user>",
--     min_rank = 0, admin_only = false, cooldown = 5,
--   }, function(cmd, ev)     -- cmd = ev.data: command, args, user, rank, room, pm, admin
--     return "text"          -- replied the way the command came; or nil, "error text"
--   end, daz.log)            -- the plugin's logger (library code has no plugin name)
--
-- register() subscribes to plugin.command.<name> (concurrent: a handler that
-- waits on the database does not hold back the next command) and, from a
-- timer (start() must not wait), asks EventFilter to register the command;
-- it retries while EventFilter is not there yet. The handler's text is sent
-- back by ev:reply, and EventFilter gets {ok=true} or the error as the
-- answer to its request. Call from the plugin's start().
local M = {}

local cut = require("text").cut
local MAX_REPLY = 1000  -- bytes; the rooms split long lines

-- Text that is safe to send to chat: no control characters, bounded, and
-- never starting with "/" (a CyTube chat command).
function M.safe_text(text)
  text = tostring(text):gsub("[%c]+", " ")
  text = cut(text, MAX_REPLY) -- never half a UTF-8 sequence
  if text:match("^%s*/") then text = "» " .. text end
  return text
end

local FIELDS = { "plugin", "name", "aliases", "description", "usage", "min_rank", "admin_only", "cooldown" }

local function request_register(bus, spec, attempt, log)
  local ok, err = bus:request("eventfilter.register", spec, { timeout = 5000 })
  if ok then return end
  if err == "no responder" or err == "timeout" then
    if attempt < 20 then
      bus:after(math.min(5000, 250 * attempt), function() request_register(bus, spec, attempt + 1, log) end)
      return
    end
  end
  if log then log.error("cannot register command %s: %s", spec.name, tostring(err)) end
end

function M.register(bus, spec, fn, log)
  assert(type(spec) == "table" and type(spec.name) == "string", "commands.register: spec.name is required")
  assert(type(spec.plugin) == "string", "commands.register: spec.plugin is required")
  assert(type(fn) == "function", "commands.register: a handler function is required")
  bus:subscribe("plugin.command." .. spec.name, function(ev)
    local ok, text, err = pcall(fn, ev.data, ev)
    if not ok then
      err, text = tostring(text), nil
      if log then log.error("command %s failed: %s", spec.name, err) end
      pcall(ev.reply, ev, "sorry, " .. spec.name .. " failed")
    elseif text then
      ev:reply(M.safe_text(text))
    elseif err then
      ev:reply(M.safe_text(spec.name .. ": " .. tostring(err)))
    end
    if ev.id then
      if ok and not err then ev:respond({ ok = true }) else ev:respond(nil, err or "failed") end
    end
  end, { concurrent = true })
  local reg = {}
  for _, k in ipairs(FIELDS) do reg[k] = spec[k] end
  bus:after(0, function() request_register(bus, reg, 1, log) end)
end

return M
