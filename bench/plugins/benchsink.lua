-- Bus benchmark: the receiving side. Counts deliveries to one exact
-- subscription and to ten pattern subscriptions, and answers a flush
-- request once everything published before it has been handled.
local P = { name = "benchsink" }

function P:init(bus) self.bus = bus end

function P:start()
  self.one, self.many = 0, 0
  self.bus:subscribe("bench.one", function() self.one = self.one + 1 end)
  for _ = 1, 10 do
    self.bus:subscribe("bench.p.*", function() self.many = self.many + 1 end)
  end
  self.bus:subscribe("bench.flush", function(ev)
    ev:respond({ one = self.one, many = self.many })
  end)
end

return P
