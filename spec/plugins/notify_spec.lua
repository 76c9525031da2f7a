-- notify: webhook posts end to end with the test CyTube server, the
-- loopback HTTP test server's webhook receiver, bin/daz and the retry
-- plugin: joined, now playing (once per change, none for replayed history),
-- mentions and keywords, kicked; a hook that is down is retried and gets
-- the post once after it comes back; a 4xx is not retried.
local h = require("helpers")
local cytube = require("cytube")
local sql = require("sqlspec")
local PL = require("plugins")
local httpserver = require("httpserver")
local cjson = require("cjson")

local function media(id, title)
  return { id = id, title = title, seconds = 100, duration = "01:40", type = "yt", meta = {}, currentTime = 0,
           paused = false }
end

describe("notify plugin: settings", function()
  local function init(cfg)
    return PL.init_plugin("notify", cfg)
  end

  it("checks each hook", function()
    local P = init({ hooks = { a = { url = "https://x.example/h", events = { "kicked", "keyword" }, keywords = { "Pizza" } } } })
    assert.equals(1, #P.hooks)
    assert.same({ "pizza" }, P.hooks[1].keywords)
    assert.equals("discord", P.hooks[1].format)
    assert.has_error(function() init({ hookz = {} }) end, "plugins.notify.hookz: unknown key")
    assert.has_error(function() init({ hooks = { a = { url = "ftp://x" } } }) end,
      "plugins.notify.hooks.a.url: must be an http:// or https:// URL")
    assert.has_error(function() init({ hooks = { a = { url = "http://x", format = "xml" } } }) end,
      'plugins.notify.hooks.a.format: must be one of discord, json, got "xml"')
    assert.has_error(function() init({ hooks = { a = { url = "http://x", events = { "dance" } } } }) end,
      'plugins.notify.hooks.a.events[1]: must be one of now_playing, mention, keyword, joined, lost, kicked, got "dance"')
    assert.has_error(function() init({ hooks = { a = { url = "http://x", events = { "keyword" } } } }) end,
      "plugins.notify.hooks.a: the keyword event needs keywords")
    assert.has_error(function() init({ hooks = { a = { url = "http://x", colour = 1 } } }) end,
      "plugins.notify.hooks.a.colour: unknown key")
  end)
end)

describe("notify plugin", function()
  local srv, web, p, dbname, url

  local function posts(name, answered)
    local out = {}
    for _, post in ipairs(web:posts(name)) do
      if answered == nil or post.answered == answered then
        post.json = cjson.decode(post.body)
        out[#out + 1] = post
      end
    end
    return out
  end

  local function wait_post(name, pred, what)
    return PL.wait(function()
      for _, post in ipairs(posts(name)) do
        if pred(post.json, post) then return post end
      end
    end, 20, what)
  end

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    web = httpserver.start({ https = false })
    dbname, url = sql.create_db()
    p = PL.start(srv, {
      url = url,
      -- Republishes a media change as replayed history when told in chat (the
      -- test server replays no media on join; CyTube does).
      plugins = { spec_replay = [[
        local P = { name = "spec_replay" }
        function P:init(bus) self.bus = bus end
        function P:start()
          self.bus:subscribe("cytube.event.chatMsg", function(ev)
            if ev.data.msg == "replay-now" then
              self.bus:publish("cytube.event.changeMedia", { id = "old1", title = "Replayed Song", type = "yt" },
                { room = ev.room, tags = { "replayed" } })
              self.bus:publish("cytube.event.changeMedia", { id = "new1", title = "Live Song", type = "yt" },
                { room = ev.room })
            end
          end)
        end
        return P ]] },
      config = {
        notify = { hooks = {
          disc = { url = web.url .. "/hook/disc", events = { "joined", "now_playing", "mention", "keyword" },
                   keywords = { "pizza" } },
          gen = { url = web.url .. "/hook/gen", format = "json", rooms = { "testroom" },
                  events = { "now_playing", "kicked", "lost" } },
          other = { url = web.url .. "/hook/other", rooms = { "elsewhere" }, events = { "now_playing", "joined" } },
        } },
        retry = { poll_ms = 100, policies = { ["http.post"] = { base_ms = 300, max_ms = 600, jitter = 0,
                                                                max_attempts = 20 } } },
      },
      env = { DAZ_HTTP__ALLOW_PRIVATE__1 = "127.0.0.1:" .. web.port },
    })
    p.wait_log("testroom: joined as dazbot", 15)
  end)

  teardown(function()
    if web then web:stop() end
    PL.cleanup(p, srv, dbname)
  end)

  it("posts the join, now playing once per media change, mentions and keywords", function()
    wait_post("disc", function(j) return j.content == "Joined testroom" end, "the joined post")
    srv:emit("testroom", "changeMedia", media("abc123", "First Song"))
    local d = wait_post("disc", function(j) return j.content and j.content:find("First Song", 1, true) end, "now playing")
    assert.equals("Now playing in testroom: First Song — https://youtu.be/abc123", d.json.content)
    local g = wait_post("gen", function(j) return j.event == "now_playing" end, "the json post")
    assert.equals("testroom", g.json.room)
    assert.equals("First Song", g.json.title)
    assert.equals("https://youtu.be/abc123", g.json.url)
    assert.equals("application/json", g.headers["content-type"])
    assert.matches("^daz/", g.headers["user-agent"])
    -- The same media again is no new change.
    srv:emit("testroom", "changeMedia", media("abc123", "First Song"))
    srv:chat("testroom", "alice", "who wants pizza")
    srv:chat("testroom", "bob", "hey DazBot, hi")
    srv:chat("testroom", "carol", "nothing to see")
    wait_post("disc", function(j) return j.content == "[testroom] alice: who wants pizza" end, "the keyword post")
    wait_post("disc", function(j) return j.content == "[testroom] bob: hey DazBot, hi" end, "the mention post")
    h.sleep(1)
    local playing = 0
    for _, post in ipairs(posts("disc")) do
      if post.json.content:find("^Now playing") then playing = playing + 1 end
      assert.is_nil(post.json.content:find("carol", 1, true))
    end
    assert.equals(1, playing)
    assert.equals(1, #posts("gen"))
    assert.same({}, posts("other"))
  end)

  it("retries a hook that is down and delivers once when it is back; a 4xx is not retried", function()
    web:hook_status("disc", 500)
    web:hook_status("gen", 404)
    srv:emit("testroom", "changeMedia", media("def456", "Second Song"))
    PL.wait(function() return #posts("disc", 500) >= 3 end, 20, "three failed attempts")
    web:hook_status("disc", 204)
    wait_post("disc", function(j, post) return post.answered == 204 and j.content:find("Second Song", 1, true) end,
      "the post delivered after the hook came back")
    PL.wait_rows(url, "SELECT status FROM daz_retry_queue WHERE operation = 'http.post'", function(rows)
      return #rows == 1 and rows[1].status == "completed"
    end, 10, "the retry row completed")
    h.sleep(1.5)
    local delivered = 0
    for _, post in ipairs(posts("disc", 204)) do
      if post.json.content:find("Second Song", 1, true) then delivered = delivered + 1 end
    end
    assert.equals(1, delivered)
    -- The 4xx: one attempt, logged once.
    local refused = posts("gen", 404)
    assert.equals(1, #refused)
    assert.equals(1, #p.logs("hook gen refused a post with 404"))
    assert.same({}, PL.plugin_problems(p, "hook gen refused a post with 404"))
    web:hook_status("gen", 204)
  end)

  it("posts a kick, and nothing for the media CyTube replays on the rejoin", function()
    srv:kick("testroom", "dazbot", "go away")
    local k = wait_post("gen", function(j) return j.event == "kicked" end, "the kicked post")
    assert.matches("^Kicked from testroom: kicked", k.json.text)
    assert.matches("go away", k.json.text)
    PL.wait(function()
      local n = 0
      for _, post in ipairs(posts("disc")) do if post.json.content == "Joined testroom" then n = n + 1 end end
      return n == 2
    end, 30, "joined again")
    -- A dropped connection is a lost room; the bot comes back.
    srv:drop("testroom", "dazbot")
    local lost = wait_post("gen", function(j) return j.event == "lost" end, "the lost post")
    assert.matches("^Lost testroom: ", lost.json.text)
    PL.wait(function()
      local n = 0
      for _, post in ipairs(posts("disc")) do if post.json.content == "Joined testroom" then n = n + 1 end end
      return n == 3
    end, 30, "joined a third time")
    srv:chat("testroom", "alice", "replay-now")
    wait_post("disc", function(j) return j.content:find("Live Song", 1, true) end, "the live media change")
    h.sleep(0.5)
    for _, post in ipairs(posts("gen")) do assert.not_equals("Replayed Song", post.json.title) end
    for _, post in ipairs(posts("disc")) do assert.is_nil(post.json.content:find("Replayed Song", 1, true)) end
  end)
end)
