-- CyTube rooms, output: pacing under the channel's flood rules, splitting
-- long text, text hygiene (control characters, accidental commands), and
-- what happens when the server's flood limit bites anyway (`cooldown`).
local h = require("helpers")
local room_suite = require("room_suite")
local R = require("rooms")

-- Waits until the server has received at least n events in all. Polls the
-- cheap health route: fetching the whole received log every 20 ms would load
-- the server enough to skew its flood-limit clock.
local function wait_received(srv, n, timeout)
  h.wait_until(function() return srv:control("GET", "/control/health").received >= n end, timeout, n .. " events")
end

local function chat_lines(srv, channel)
  local out = {}
  for _, e in ipairs(R.sent(srv, channel, "chatMsg")) do out[#out + 1] = e.data.msg end
  return out
end

describe("rooms: output", function()
  local room = room_suite.new()
  local srv = room.srv

  it("sends a burst of 200 lines in order with no cooldown under the channel's antiflood", function()
    -- bob has rank 1 in "flood": the channel's antiflood applies to him.
    srv:channel_opts("flood", { chat_antiflood = true, chat_antiflood_params = { burst = 20, sustained = 10 } })
    local p = room.start_bot({ rooms = { { channel = "flood", username = "bob", password = "bob-pass-1" } },
      probe = { quiet = true } })
    R.wait_state(p, "flood", "joined")
    local t0 = h.now()
    srv:chat("flood", "alice", "!burst 200", { raw = true })
    wait_received(srv, 202, 90) -- joinChannel, login, 200 lines
    h.wait_until(function()
      local buffer = srv:channel_state("flood").buffer
      return buffer[#buffer].msg == "line 200"
    end, 20, "line 200 accepted")
    local took = h.now() - t0
    local lines = chat_lines(srv, "flood")
    local st = R.state(p, srv, "flood")
    -- A line the server refused (cooldown) is re-sent at once: collapse such
    -- repeats so a failure below names the real problem.
    local accepted = {}
    for _, l in ipairs(lines) do
      if accepted[#accepted] ~= l then accepted[#accepted + 1] = l end
    end
    for i = 1, 200 do assert.equals("line " .. i, accepted[i]) end
    assert.equals(0, st.counters.cooldowns, "the server refused lines (machine load?)")
    assert.equals(0, st.counters.lines_dropped)
    assert.equals(10, st.flood.sustained)
    -- Paced, not dumped: 180+ lines at <= 10/s take well over 15 s.
    assert.is_true(took > 15, ("200 lines took only %.1f s"):format(took))
  end)

  it("follows a slow antiflood setting and gets no cooldown", function()
    srv:channel_opts("slow", { chat_antiflood = true, chat_antiflood_params = { burst = 4, sustained = 2 } })
    local p = room.start_bot({ rooms = { { channel = "slow", username = "bob", password = "bob-pass-1" } } })
    R.wait_state(p, "slow", "joined")
    srv:chat("slow", "alice", "!burst 8", { raw = true })
    wait_received(srv, 10, 20)
    h.wait_until(function()
      local n = 0
      for _, m in ipairs(srv:channel_state("slow").buffer) do n = n + (m.username == "bob" and 1 or 0) end
      return n == 8
    end, 5, "8 lines accepted")
    assert.equals(0, #R.events(p, "cytube.event.cooldown"))
  end)

  it("splits a 1,000-character reply on word boundaries into lines CyTube takes whole", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } } })
    R.wait_state(p, "testroom", "joined")
    local words = {}
    local n = 0
    while n < 1000 do
      local w = ({ "wörd", "emoji😀", "plain", "καλημέρα", "x" })[#words % 5 + 1] .. #words
      words[#words + 1] = w
      n = n + R.utf16_len(w) + 1
    end
    local text = table.concat(words, " ")
    srv:config({ max_chat_length = 2000 }) -- alice's command must arrive whole
    srv:chat("testroom", "alice", "!say " .. text, { raw = true })
    srv:config({ max_chat_length = 320 })
    local say = R.wait_result(p, "say")
    assert.is_true(say.ok, say.err)
    h.wait_until(function() return #chat_lines(srv, "testroom") == say.lines end, 10, "every piece")
    local lines = chat_lines(srv, "testroom")
    assert.is_true(#lines >= 4, "only " .. #lines .. " lines")
    for _, l in ipairs(lines) do
      assert.is_true(R.utf16_len(l) <= 320, "a line of " .. R.utf16_len(l) .. " UTF-16 units")
      assert.is_truthy(utf8.len(l), "a line with a broken character")
    end
    assert.equals(text, table.concat(lines, " "))
  end)

  it("strips control characters and never sends plugin text as a command", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } } })
    R.wait_state(p, "testroom", "joined")
    local before = srv:channel_state("testroom").drinkCount
    srv:chat("testroom", "alice", "!say /dance\tnow\n\0please", { raw = true })
    h.wait_until(function() return #chat_lines(srv, "testroom") == 1 end, 10, "the line")
    assert.equals(" /dance now please", chat_lines(srv, "testroom")[1])
    srv:chat("testroom", "alice", "!say /kick alice", { raw = true })
    h.wait_until(function() return #chat_lines(srv, "testroom") == 2 end, 10, "the second line")
    assert.equals(" /kick alice", chat_lines(srv, "testroom")[2])
    assert.equals(before, srv:channel_state("testroom").drinkCount)
    -- Both arrived as ordinary chat.
    local buffer = srv:channel_state("testroom").buffer
    assert.equals(" /kick alice", buffer[#buffer].msg)
  end)

  it("slows down on cooldown and re-sends the dropped lines in order", function()
    -- The server limits bob to 3 back to back then 5/s; the bot is told
    -- (only it) that there is no antiflood, so it sends too fast at first.
    srv:channel_opts("cool", { chat_antiflood = true, chat_antiflood_params = { burst = 3, sustained = 5 } })
    local p = room.start_bot({ rooms = { { channel = "cool", username = "bob", password = "bob-pass-1" } } })
    R.wait_state(p, "cool", "joined")
    local opts = srv:channel_state("cool").opts
    opts.chat_antiflood = false
    srv:emit("cool", "channelOpts", opts, "bob")
    h.wait_until(function()
      return #R.events(p, "cytube.event.channelOpts") >= 2
    end, 10, "the fake channelOpts")
    srv:chat("cool", "alice", "!burst 6", { raw = true })
    h.wait_until(function() return #srv:channel_state("cool").buffer >= 7 end, 20, "all 6 lines accepted")
    local accepted = {}
    for _, m in ipairs(srv:channel_state("cool").buffer) do
      if m.username == "bob" then accepted[#accepted + 1] = m.msg end
    end
    assert.same({ "line 1", "line 2", "line 3", "line 4", "line 5", "line 6" }, accepted)
    local st = R.state(p, srv, "cool")
    assert.is_true(st.counters.cooldowns >= 1)
    assert.is_true(st.counters.resent >= 1)
    assert.equals(0, st.counters.lines_dropped)
    assert.is_true(st.flood.slowdown > 1)
  end)
end)
