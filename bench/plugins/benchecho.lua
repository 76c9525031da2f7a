-- Bus benchmark: the responder for request/response round trips.
local P = { name = "benchecho" }

function P:init(bus) self.bus = bus end

function P:start()
  self.bus:subscribe("bench.echo", function(ev) ev:respond(ev.data) end)
end

return P
