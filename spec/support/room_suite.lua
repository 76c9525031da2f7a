-- One describe block's test CyTube server and the bots its tests start:
--
--   local room = require("room_suite").new()
--   local srv = room.srv
--   it("...", function() local p = room.start_bot({ rooms = ... }) ... end)
--
-- new(opts) installs busted's hooks: setup starts the server (with
-- usercount_throttle = 0 and opts.server, a table or a function run in
-- setup that returns one), before_each resets it, after_each stops every
-- bot the test started, and teardown stops the server and removes the
-- temporary files. room.start_bot(bot_opts) is rooms.start_bot against
-- room.srv; room.track(p) hands over a bot started some other way.
local busted = require("busted")
local h = require("helpers")
local cytube = require("cytube")
local R = require("rooms")

local M = {}

function M.new(opts)
  opts = opts or {}
  local room = { srv = cytube.new() }
  local bots = {}

  function room.track(p)
    bots[#bots + 1] = p
    return p
  end

  function room.start_bot(bot_opts)
    return room.track(R.start_bot(room.srv, bot_opts))
  end

  busted.setup(function()
    local server = { usercount_throttle = 0 }
    local extra = opts.server
    if type(extra) == "function" then extra = extra() end
    for k, v in pairs(extra or {}) do server[k] = v end
    room.srv:start(server)
  end)
  busted.teardown(function()
    room.srv:stop()
    h.cleanup_tmp() -- not per test: the server's own files live there too
  end)
  busted.before_each(function() room.srv:reset() end)
  busted.after_each(function()
    for _, p in ipairs(bots) do
      if p.running() then p.stop_clean() end
    end
    bots = {}
  end)
  return room
end

return M
