-- The test CyTube server against the real one: each capture in
-- spec/fixtures/cytube-3.86 (from a real CyTube 3.86 server) is replayed
-- client side against the test server (spec/support/cytube-server/replay.js),
-- and the server's frames must match the capture's, per client and in order.
-- Ignored: session ids, times, cloaked IPs and alias lists (they depend on
-- the server's history), and the content of the replayed chat history (the
-- chatMsg frames of the join burst).
local h = require("helpers")
local cytube = require("cytube")
local cjson = require("cjson")

local DIR = h.root .. "/spec/fixtures/cytube-3.86"

-- Canonical JSON: sorted keys, so two decodings compare as text.
local function canon(v)
  local t = type(v)
  if t == "table" then
    if v == cjson.null then return "null" end
    local n = #v
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if n > 0 and #keys == n then
      local parts = {}
      for i = 1, n do parts[i] = canon(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = ("%q:%s"):format(tostring(k), canon(v[k])) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    return ("%.14g"):format(v)
  elseif t == "string" then
    return ("%q"):format(v)
  end
  return tostring(v)
end

local function scrub(v, key)
  if key == "time" or key == "timestamp" then return 0 end
  if key == "ip" then return "<ip>" end
  if key == "aliases" then return "<aliases>" end
  if type(v) == "table" and v ~= cjson.null then
    local out = {}
    for k, x in pairs(v) do out[k] = scrub(x, k) end
    return out
  end
  return v
end

-- One frame as comparable text.
local function normalize(frame, opts)
  if frame:sub(1, 1) == "0" then
    local ok, o = pcall(cjson.decode, frame:sub(2))
    if not ok then return frame end
    o.sid = "<sid>"
    if opts.ignore_ping then o.pingInterval, o.pingTimeout = "<n>", "<n>" end
    return "0" .. canon(o)
  end
  if frame:match("^40{") then return "40{sid}" end
  if frame:sub(1, 2) == "42" then
    local ok, a = pcall(cjson.decode, frame:sub(3))
    if not ok or type(a) ~= "table" then return frame end
    local data = scrub(a[2])
    if a[1] == "chatMsg" and type(data) == "table" and data.username == "[server]" and type(data.msg) == "string" then
      data.msg = data.msg:gsub("%(aliases: [^)]*%)", "(aliases: <aliases>)")
    end
    return "42 " .. tostring(a[1]) .. " " .. canon(data)
  end
  return frame
end

-- Drop the replayed history: chatMsg frames between emoteList and
-- drinkCount in a join burst.
local function without_history(frames)
  local out, in_burst = {}, false
  for _, f in ipairs(frames) do
    if f:match("^42 emoteList ") then in_burst = true end
    if f:match("^42 drinkCount ") then in_burst = false end
    if not (in_burst and f:match("^42 chatMsg ")) then out[#out + 1] = f end
  end
  return out
end

local function expected(file, opts)
  local per = {}
  for line in io.lines(file) do
    local client, dir, frame = line:match("^%s*%d+%s+(%S+)%s+(%S+)%s(.*)$")
    if client and dir == "in" then
      per[client] = per[client] or {}
      table.insert(per[client], normalize(frame:gsub("^%s+", ""), opts))
    end
  end
  for k, v in pairs(per) do per[k] = without_history(v) end
  return per
end

local function replay(srv, file, opts)
  local cmd = ("timeout 90 node %s %s %s --scale %s"):format(h.shquote(cytube.dir .. "/replay.js"),
    h.shquote(srv.url), h.shquote(file), tostring(opts.scale or 1))
  local ok, _, out = h.sh(cmd)
  assert(ok, "replay failed: " .. out)
  local result = cjson.decode(out:match("[^\n]*$") ~= "" and out:match("[^\n]*$") or out:match("([^\n]+)\n?$"))
  local per = {}
  for client, frames in pairs(result.clients) do
    local list = {}
    for i, f in ipairs(frames) do list[i] = normalize(f, opts) end
    per[client] = without_history(list)
  end
  return per, result.closed
end

local CAPTURES = {
  { file = "join-chat.txt" },
  { file = "flood.txt" },
  { file = "duplicate-login.txt" },
  { file = "bad-login.txt" },
  { file = "bad-frames.txt" },
  { file = "guest-and-kick.txt" },
  { file = "connect-rate-limit.txt", config = { conn_burst = 5, conn_rate = 0.1 }, any_client_order = true },
  { file = "ping.txt", server = { ping_interval = 1500 }, scale = 0.1, ignore_ping = true },
}

describe("test CyTube server against the real captures", function()
  local srv

  setup(function() srv = cytube.start({}) end)
  teardown(function()
    if srv then srv:stop() end
    h.cleanup_tmp()
  end)

  for _, c in ipairs(CAPTURES) do
    it("answers like CyTube 3.86 in " .. c.file, function()
      local s = srv
      if c.server then s = cytube.start(c.server) end
      s:reset()
      s:config({ conn_burst = 0 })
      if c.config then s:config(c.config) end
      local ok, err = pcall(function()
        local want = expected(DIR .. "/" .. c.file, c)
        local got = replay(s, DIR .. "/" .. c.file, c)
        if c.any_client_order then
          -- Which connections of a simultaneous burst win is a race: compare
          -- the set of conversations, not who had which.
          local function bag(per)
            local out = {}
            for _, frames in pairs(per) do out[#out + 1] = table.concat(frames, "\n") end
            table.sort(out)
            local keyed = {}
            for i, v in ipairs(out) do keyed["#" .. i] = { v } end
            return keyed
          end
          want, got = bag(want), bag(got)
        end
        for client, frames in pairs(want) do
          local mine = got[client] or {}
          for i = 1, math.max(#frames, #mine) do
            if frames[i] ~= mine[i] then
              error(("%s, client %s, frame %d:\n  real: %s\n  test: %s\n  (test server's next: %s)"):format(
                c.file, client, i, tostring(frames[i]), tostring(mine[i]), tostring(mine[i + 1])), 0)
            end
          end
        end
      end)
      s:config({ conn_burst = 0 })
      if s ~= srv then s:stop() end
      if not ok then error(err, 0) end
    end)
  end
end)
