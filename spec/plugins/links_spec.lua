-- links: chat in, title out, end to end with the test CyTube server, the
-- loopback HTTP test server and bin/daz; and its pure parts (lua/lib/links.lua).
local h = require("helpers")
local cytube = require("cytube")
local sql = require("sqlspec")
local PL = require("plugins")
local httpserver = require("httpserver")
local L = require("links")

describe("links (lua/lib/links.lua)", function()
  it("finds URLs and their hosts", function()
    assert.same({ "http://a.example/x?y=1", "https://b.example" },
      L.find_urls("see http://a.example/x?y=1, and (https://b.example).", 3))
    assert.same({ "http://a.example" }, L.find_urls("http://a.example http://a.example", 3))
    assert.equals("b.example", L.host("https://user:pw@B.Example:8080/x"))
    assert.equals("::1", L.host("http://[::1]:80/"))
    assert.is_true(L.in_domain("www.youtube.com", "youtube.com"))
    assert.is_false(L.in_domain("notyoutube.com", "youtube.com"))
  end)

  it("takes og:title or <title>, decoded, collapsed and cut to a line", function()
    assert.equals("Café & Bar <3", L.title("<title>\n Caf&#233; &amp;\t Bar &lt;3 </title>"))
    assert.equals('The "OG"', L.title('<meta property="og:title" content="The &quot;OG&quot;"><title>x</title>'))
    assert.equals("plain", L.title('<meta property="og:title" content="  "><TITLE lang="en">plain</TITLE>'))
    assert.is_nil(L.title("<p>no title</p>"))
    local long = L.title("<title>" .. ("é"):rep(300) .. "</title>", 50)
    assert.is_true(#long <= 50)
    assert.truthy(utf8.len(long))
    assert.equals("me dances", L.safe_line("/me dances"))
    assert.equals("x", L.safe_line(" //x"))
    assert.is_nil(L.safe_line("/ /"))
  end)
end)

describe("links plugin: settings and what it skips", function()
  local function plugin(cfg)
    return PL.init_plugin("links", cfg)
  end

  it("fetches only allowed domains, never denied ones or media", function()
    local P = plugin({ rooms = { "r" }, allow_domains = { "good.example" }, deny_domains = { "bad.good.example" } })
    assert.is_nil(P:skip_reason("http://good.example/a"))
    assert.is_nil(P:skip_reason("https://www.good.example:8443/a"))
    assert.equals("not allowed", P:skip_reason("http://other.example/"))
    assert.equals("denied", P:skip_reason("http://x.bad.good.example/"))
    assert.equals("media", P:skip_reason("https://www.youtube.com/watch?v=x"))
    assert.equals("media", P:skip_reason("https://good.example/pic.JPG?size=2"))
    local all = plugin({ rooms = { "r" }, skip_media = false })
    assert.is_nil(all:skip_reason("https://youtu.be/x"))
  end)

  it("refuses unknown or mistyped settings", function()
    assert.has_error(function() plugin({ roomz = {} }) end, "plugins.links.roomz: unknown key")
    assert.has_error(function() plugin({ window = "1h" }) end, "plugins.links.window: expected a number, got string")
    assert.has_error(function() plugin({ rooms = { 1 } }) end, "plugins.links.rooms[1]: expected a string, got number")
    assert.has_error(function() plugin({ user_limit = -1 }) end, "plugins.links.user_limit: must be at least 0, got -1")
  end)
end)

describe("links plugin", function()
  local srv, web, p, dbname, url
  local health = h.free_port()

  setup(function()
    srv = cytube.start({ usercount_throttle = 0 })
    web = httpserver.start({ https = false })
    dbname, url = sql.create_db()
    -- Said before the bot joins: CyTube replays it on join; links must not answer it.
    srv:chat("testroom", "alice", "old news " .. web.url .. "/title?t=Replayed")
    p = PL.start(srv, {
      url = url,
      config = { links = { rooms = { "testroom" }, deny_domains = { "denied.example" }, user_limit = 3, room_limit = 8 } },
      env = {
        DAZ_HEALTH__PORT = tostring(health),
        DAZ_HTTP__ALLOW_PRIVATE__1 = "127.0.0.1:" .. web.port,
        DAZ_HTTP__RESOLVE__1 = "denied.example:" .. web.port .. ":127.0.0.1",
        DAZ_HTTP__RESOLVE__2 = "youtu.be:" .. web.port .. ":127.0.0.1",
        DAZ_HTTP__RESOLVE__3 = "pages.example:" .. web.port .. ":127.0.0.1",
      },
    })
    p.wait_log("testroom: joined as dazbot", 15)
  end)

  teardown(function()
    if web then web:stop() end
    PL.cleanup(p, srv, dbname)
  end)

  local function titles()
    local out = {}
    for _, d in ipairs(PL.sent(srv, "testroom", "chatMsg")) do out[#out + 1] = d.msg end
    return out
  end

  it("says a linked page's title once per URL, and skips what it should", function()
    local page = web.url .. "/page/entities"
    srv:chat("testroom", "bob", "look at " .. page .. " please")
    PL.wait_sent(srv, "testroom", "chatMsg", "^Café & Bar <3$", 15)
    -- The same URL again, the bot's own line, denied domains and media links: nothing.
    srv:chat("testroom", "carol", "again " .. page)
    srv:chat("testroom", "dazbot", "mine " .. web.url .. "/title?t=Own")
    srv:chat("testroom", "carol", "http://denied.example:" .. web.port .. "/title?t=Denied")
    srv:chat("testroom", "carol", "http://youtu.be:" .. web.port .. "/title?t=Media")
    srv:chat("testroom", "carol", web.url .. "/title.png?t=Picture")
    srv:chat("testroom", "carol", web.url .. "/page/notitle " .. web.url .. "/status/404")
    -- og:title wins; a title starting with "/" never becomes a command.
    srv:chat("testroom", "dave", "http://pages.example:" .. web.port .. "/page/og")
    PL.wait_sent(srv, "testroom", "chatMsg", '^The OG "Title"$', 15)
    srv:chat("testroom", "dave", web.url .. "/page/slash")
    PL.wait_sent(srv, "testroom", "chatMsg", "^me dances$", 15)
    srv:chat("testroom", "dave", web.url .. "/page/long")
    local long = PL.wait_sent(srv, "testroom", "chatMsg", "^word word", 15)
    assert.is_true(#long.data.msg <= 200)
    h.sleep(0.5)
    local said = titles()
    assert.same({ "Café & Bar <3", 'The OG "Title"', "me dances", long.data.msg }, said)
    for _, line in ipairs(said) do assert.is_nil(line:match("^/")) end
  end)

  it("cannot be made to fetch a private address from chat (the SSRF guard)", function()
    -- The health server is on loopback and not in http.allow_private.
    local metrics = ("http://127.0.0.1:%d/metrics"):format(health)
    assert.equals(200, (h.http("GET", metrics)))
    local before = #titles()
    srv:chat("testroom", "mallory", "see " .. metrics)
    srv:chat("testroom", "mallory", web.url .. "/redirect?to=" .. metrics)
    PL.wait(function()
      local _, text = h.http("GET", metrics)
      return text:find('daz_http_requests_total{plugin="links",outcome="refused"} 2\n', 1, true)
    end, 15, "two refused fetches in the metrics")
    assert.equals(before, #titles())
  end)

  it("limits each user and each room", function()
    local before = #titles()
    for i = 1, 5 do srv:chat("testroom", "erin", web.url .. "/title?t=Erin" .. i) end
    PL.wait(function() return #titles() >= before + 3 end, 15, "three titles")
    h.sleep(1)
    local said = titles()
    assert.equals(before + 3, #said) -- user_limit = 3 per minute
    srv:chat("testroom", "frank", web.url .. "/title?t=Frank")
    PL.wait_sent(srv, "testroom", "chatMsg", "^Frank$", 15)
    assert.equals(8, #titles())
    -- room_limit = 8 per minute: the ninth waits.
    srv:chat("testroom", "gina", web.url .. "/title?t=Gina")
    h.sleep(1.5)
    assert.equals(8, #titles())
    assert.same({}, PL.plugin_problems(p))
  end)
end)
