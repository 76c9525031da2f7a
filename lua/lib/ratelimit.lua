-- ratelimit: in-memory limits for chat input, all bounded.
--   window(limit, seconds): at most `limit` hits per sliding window
--   cooldowns(): per-key "not again before" times
-- Keys are strings; a table of keys is swept so it cannot grow without end.
local M = {}

local MAX_KEYS = 10000

local Window = {}
Window.__index = Window

-- A sliding-window limiter: hit(key, now) -> true (allowed, counted) or
-- false, seconds_until_allowed. Refused hits are not counted.
function M.window(limit, seconds)
  return setmetatable({ limit = limit, seconds = seconds, hits = {}, n = 0 }, Window)
end

local function prune(list, cutoff)
  local keep = 1
  for i = 1, #list do
    if list[i] > cutoff then list[keep] = list[i]; keep = keep + 1 end
  end
  for i = #list, keep, -1 do list[i] = nil end
end

function Window:sweep(now)
  local cutoff = now - self.seconds
  for key, list in pairs(self.hits) do
    prune(list, cutoff)
    if #list == 0 then self.hits[key] = nil; self.n = self.n - 1 end
  end
end

-- count(key, now): hits within the window.
function Window:count(key, now)
  local list = self.hits[key]
  if not list then return 0 end
  prune(list, now - self.seconds)
  return #list
end

function Window:hit(key, now)
  if self.limit <= 0 then return true end
  local list = self.hits[key]
  if not list then
    if self.n >= MAX_KEYS then
      self:sweep(now)
      -- Still full of live keys (a flood of names): forget them all rather than grow.
      if self.n >= MAX_KEYS then self.hits, self.n = {}, 0 end
    end
    list = {}
    self.hits[key] = list
    self.n = self.n + 1
  end
  prune(list, now - self.seconds)
  if #list >= self.limit then
    return false, list[1] + self.seconds - now
  end
  list[#list + 1] = now
  return true
end

local Cooldowns = {}
Cooldowns.__index = Cooldowns

-- Per-key cooldowns: check(key, now) -> true, or false, seconds_left.
function M.cooldowns()
  return setmetatable({ until_ = {}, n = 0 }, Cooldowns)
end

function Cooldowns:check(key, now)
  local t = self.until_[key]
  if t and t > now then return false, t - now end
  return true
end

function Cooldowns:start(key, now, seconds)
  if seconds <= 0 then return end
  if not self.until_[key] then
    if self.n >= MAX_KEYS then
      for k, t in pairs(self.until_) do
        if t <= now then self.until_[k] = nil; self.n = self.n - 1 end
      end
      if self.n >= MAX_KEYS then self.until_, self.n = {}, 0 end
    end
    self.n = self.n + 1
  end
  self.until_[key] = now + seconds
end

return M
