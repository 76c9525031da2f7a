-- CyTube rooms over TLS: discovery over https:// and the WebSocket over
-- wss://, against the test server with a certificate from a private CA.
local h = require("helpers")
local cytube = require("cytube")
local R = require("rooms")
local room_suite = require("room_suite")

-- A CA and a server certificate for 127.0.0.1 (and localhost).
local function make_certs(dir)
  local script = ([[
set -e
cd %s
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=daz test CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj "/CN=127.0.0.1" 2>/dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" > ext.cnf
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null
printf "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n" > ext2.cnf
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out local.pem -days 2 -extfile ext2.cnf 2>/dev/null
]]):format(h.shquote(dir))
  local ok, _, out = h.sh(script)
  assert(ok, "openssl failed: " .. out)
end

describe("rooms: TLS", function()
  local dir
  local room = room_suite.new({ server = function()
    dir = h.tmpdir()
    make_certs(dir)
    return { tls_cert = dir .. "/srv.pem", tls_key = dir .. "/srv.key" }
  end })
  local srv = room.srv

  it("joins over https:// and wss:// with the certificate verified", function()
    assert.matches("^https://", srv.url)
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { tls_ca_file = dir .. "/ca.pem" } })
    R.wait_state(p, "testroom", "joined", 15)
    srv:chat("testroom", "alice", "!say over tls", { raw = true })
    h.wait_until(function()
      for _, e in ipairs(R.sent(srv, "testroom", "chatMsg")) do if e.data.msg == "over tls" then return true end end
    end, 10, "chat over wss")
  end)

  it("refuses a certificate it cannot verify, and says so", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } } })
    local st = R.wait_state(p, "testroom", "backoff", 15)
    assert.matches("certificate", st.detail)
    assert.equals(0, #R.sent(srv, "testroom", "joinChannel"))
  end)

  it("checks the WebSocket server's name against its certificate", function()
    -- Discovery at https://localhost (the certificate names only localhost)
    -- sends the bot to wss://127.0.0.1, which the certificate does not name.
    local other = cytube.start({ tls_cert = dir .. "/local.pem", tls_key = dir .. "/srv.key" })
    local p
    local ok, err = pcall(function()
      p = R.start_bot(other, { rooms = { { channel = "testroom", server = other.url:gsub("127.0.0.1", "localhost") } },
        core = { tls_ca_file = dir .. "/ca.pem" } })
      local st = R.wait_state(p, "testroom", "backoff", 15)
      assert.matches("cannot connect to 127.0.0.1", st.detail, 1, true)
      assert.equals(0, #R.sent(other, "testroom", "joinChannel"))
      p.wait_log("SSL error: .*mismatch", 5) -- lws checked the name, not just the chain
    end)
    if p and p.running() then p.stop_clean() end
    other:stop()
    if not ok then error(err, 0) end
  end)

  it("connects to an unverified server only when verify_tls is off", function()
    local p = room.start_bot({ rooms = { { channel = "testroom", username = "dazbot", password = "dazbot-pass-1" } },
      core = { verify_tls = false } })
    R.wait_state(p, "testroom", "joined", 15)
  end)
end)
