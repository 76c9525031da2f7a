-- CyTube rooms, discovery: daz's HTTP client (src/http_client.c, on the
-- rooms' libwebsockets context) against the test server's odd answers:
-- a redirect, a redirect loop, a chunked body.
local R = require("rooms")
local room_suite = require("room_suite")

describe("rooms: discovery", function()
  local room = room_suite.new()
  local srv = room.srv

  local function bot(server)
    return room.start_bot({ rooms = { { channel = "testroom", server = server,
      username = "dazbot", password = "dazbot-pass-1" } }, core = { backoff_initial_ms = 60000 } })
  end

  it("follows a redirect to the discovery answer", function()
    local p = bot(srv.url .. "/moved")
    R.wait_state(p, "testroom", "joined")
  end)

  it("reads a chunked answer", function()
    local p = bot(srv.url .. "/chunked")
    R.wait_state(p, "testroom", "joined")
  end)

  it("gives up on a redirect loop and says so", function()
    local p = bot(srv.url .. "/loop")
    local st = R.wait_state(p, "testroom", "backoff")
    assert.matches("too many redirects", st.detail, 1, true)
    assert.equals(0, #srv:received("testroom"))
  end)

  it("reports an HTTP error with the server's reason from the body", function()
    local p = bot(srv.url .. "/nope")
    local st = R.wait_state(p, "testroom", "backoff")
    assert.matches("HTTP 404", st.detail, 1, true)
    assert.matches("Not found", st.detail, 1, true)
  end)
end)
