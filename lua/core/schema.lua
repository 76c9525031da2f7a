-- schema: the language config.lua's settings are described in, and the one
-- checker for it. lua/core/config.lua describes the core config with it; a
-- plugin describes its own settings with it (its `settings` field, checked
-- by lua/core/plugins.lua). Uses nothing.
--
-- A node is a table { kind = ..., default = ..., required = ..., check = fn };
-- check(value) returns nil or what is wrong. A problem is one line
-- "<path>: <what is wrong>".

local M = {}

------------------------------------------------------------------------------
-- Constructors that describe each value.

local function node(kind, opts)
  opts = opts or {}
  opts.kind = kind
  return opts
end

function M.str(opts) return node("string", opts) end
function M.int(opts) return node("integer", opts) end
function M.num(opts) return node("number", opts) end
function M.bool(opts) return node("boolean", opts) end
function M.enum(values, opts)
  opts = opts or {}
  opts.values = values
  return node("enum", opts)
end
function M.record(fields, opts)
  opts = opts or {}
  opts.fields = fields
  return node("record", opts)
end
function M.array(of, opts)
  opts = opts or {}
  opts.of = of
  return node("array", opts)
end
function M.map(of, opts)
  opts = opts or {}
  opts.of = of
  return node("map", opts)
end
-- A table whose keys belong to someone else (a plugin without a schema).
function M.free(opts) return node("free", opts) end

-- Checks for the `check` option.
function M.range(lo, hi)
  return function(v)
    if (lo and v < lo) or (hi and v > hi) then
      if lo and hi then return ("must be between %s and %s, got %s"):format(lo, hi, v) end
      if lo then return ("must be at least %s, got %s"):format(lo, v) end
      return ("must be at most %s, got %s"):format(hi, v)
    end
  end
end

function M.positive(v)
  if v <= 0 then return ("must be more than 0, got %s"):format(v) end
end

function M.nonempty(v)
  if v == "" then return "must not be empty" end
end

------------------------------------------------------------------------------
-- Paths as operators read them: core.rooms[2].channel, plugins["my-plugin"].

function M.join_path(path, key)
  if type(key) == "number" then return ("%s[%d]"):format(path, key) end
  if key:match("^[%a_][%w_]*$") then
    return path == "" and key or (path .. "." .. key)
  end
  return ("%s[%q]"):format(path, key)
end

function M.describe(v)
  local t = math.type(v) or type(v)
  if t == "float" or t == "integer" then return "number" end
  return t
end

local article = { integer = "an integer", enum = "a string", record = "a table",
  array = "a list", map = "a table", free = "a table" }

local function expected(kind)
  return article[kind] or ("a " .. kind)
end

------------------------------------------------------------------------------
-- Validation: returns the value with defaults filled in; appends problems.

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

local function check_kind(s, v)
  local k = s.kind
  if k == "string" or k == "enum" then return type(v) == "string" end
  if k == "integer" then return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v) and v == v and math.abs(v) < 2^53) end
  if k == "number" then return type(v) == "number" end
  if k == "boolean" then return type(v) == "boolean" end
  return type(v) == "table"
end

function M.validate(s, v, path, problems)
  if v == nil then
    if s.required then
      problems[#problems + 1] = path .. ": is required"
      return nil
    end
    if s.default == nil then return nil end
    v = s.default
    if type(v) == "table" then
      local copy = {}
      for k, x in pairs(v) do copy[k] = x end
      v = copy
    end
  end
  if not check_kind(s, v) then
    problems[#problems + 1] = ("%s: expected %s, got %s"):format(path, expected(s.kind), M.describe(v))
    return nil
  end
  if s.kind == "integer" then v = math.tointeger(v) end
  if s.kind == "enum" then
    local ok = false
    for _, allowed in ipairs(s.values) do if v == allowed then ok = true end end
    if not ok then
      problems[#problems + 1] = ("%s: must be one of %s, got %q"):format(path, table.concat(s.values, ", "), v)
      return nil
    end
  elseif s.kind == "record" then
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= "string" or not s.fields[k] then
        problems[#problems + 1] = M.join_path(path, type(k) == "string" and k or tostring(k)) .. ": unknown key"
      else
        out[k] = x
      end
    end
    local keys = {}
    for k in pairs(s.fields) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      out[k] = M.validate(s.fields[k], out[k], M.join_path(path, k), problems)
    end
    v = out
  elseif s.kind == "array" then
    if not is_array(v) then
      problems[#problems + 1] = path .. ": expected a list (keys 1..n), got a table with other keys"
      return nil
    end
    local out = {}
    for i = 1, #v do out[i] = M.validate(s.of, v[i], M.join_path(path, i), problems) end
    v = out
  elseif s.kind == "map" then
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= "string" then
        problems[#problems + 1] = ("%s: keys must be strings, got %s"):format(path, M.describe(k))
      else
        out[k] = M.validate(s.of, x, M.join_path(path, k), problems)
      end
    end
    v = out
  elseif s.kind == "free" then
    if v.enabled ~= nil and type(v.enabled) ~= "boolean" then
      problems[#problems + 1] = ("%s: expected a boolean, got %s"):format(M.join_path(path, "enabled"), M.describe(v.enabled))
    end
  end
  if s.check then
    local why = s.check(v)
    if why then problems[#problems + 1] = path .. ": " .. why end
  end
  return v
end

-- check(schema, value, path) -> value with defaults filled in | nil, { problem lines }
function M.check(s, v, path)
  local problems = {}
  local out = M.validate(s, v, path or "", problems)
  if #problems > 0 then return nil, problems end
  return out
end

return M
