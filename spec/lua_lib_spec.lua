-- The shared Lua modules in lua/lib, run directly under busted.
local html = require("html")
local args = require("args")
local duration = require("duration")

describe("html.to_text", function()
  it("undoes CyTube's default chat filters", function()
    assert.equals("!cmd foo_bar_baz", html.to_text("!cmd foo<em>bar</em>baz"))
    assert.equals("*star* `code` ~~gone~~", html.to_text("<strong>star</strong> <code>code</code> <s>gone</s>"))
    assert.equals("[sp]secret[/sp]", html.to_text('<span class="spoiler">secret</span>'))
  end)

  it("keeps link text and decodes entities, as in the real capture", function()
    local msg = 'hello &lt;b&gt;world&lt;/b&gt; &amp; "friends" (it\'s me) <em>under</em> <strong>star</strong> ' ..
      '<code>code</code> <a href="http://example.com/x?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">' ..
      'http://example.com/x?a=1&amp;b=2</a>'
    assert.equals('hello <b>world</b> & "friends" (it\'s me) _under_ *star* `code` http://example.com/x?a=1&b=2',
      html.to_text(msg))
  end)

  it("decodes numeric entities and leaves invalid ones", function()
    assert.equals("A é ☃ &#xD800; &bogus;", html.to_text("&#65; &#xe9; &#9731; &#xD800; &bogus;"))
  end)

  it("drops unknown and unbalanced tags", function()
    assert.equals("x y", html.to_text("<img src=a>x <i>y"))
    assert.equals("", html.to_text(nil))
  end)
end)

describe("text.cut", function()
  local cut = require("text").cut
  it("leaves short valid text alone and cuts long text on a character boundary", function()
    assert.equal("plain line", cut("plain line", 100))
    assert.equal("h\195\169llo", cut("h\195\169llo"))
    -- "é" is two bytes: a cut after its first byte drops it whole
    assert.equal("h", cut("h\195\169llo", 2))
    assert.equal("h\195\169", cut("h\195\169llo", 3))
  end)
  it("keeps only what comes before the first invalid byte", function()
    assert.equal("ok ", cut("ok \255 rest"))
    assert.equal("", cut("\128abc"))
  end)
end)

describe("html.to_text on plain lines", function()
  it("returns a line without tags or entities as it is", function()
    assert.equal("just words, no markup: 1 ", html.to_text("just words, no markup: 1 "))
    assert.equal("a &amp; b", html.to_text("a &amp;amp; b"))
    assert.equal("1 < 2", html.to_text("1 &lt; 2"))
  end)
end)

describe("args.split", function()
  it("splits on whitespace and honours quotes and escapes", function()
    assert.same({ "add", "two words", "it's", "a\"b" }, args.split([[add "two words" 'it'"'"'s' a\"b]]))
    assert.same({}, args.split("   "))
    assert.same({ "" }, args.split('""'))
  end)

  it("bounds the number and length of arguments", function()
    local many = string.rep("x ", 40)
    local r, err = args.split(many)
    assert.is_nil(r)
    assert.truthy(err:find("more than 32"))
    r, err = args.split(string.rep("y", 600))
    assert.is_nil(r)
    assert.truthy(err:find("longer than 512"))
    r, err = args.split('"open')
    assert.is_nil(r)
    assert.equals("unclosed quote", err)
  end)

  it("keeps multibyte characters whole", function()
    assert.same({ "héllo", "☃" }, args.split("héllo ☃"))
  end)
end)

describe("duration.format", function()
  it("formats spans with the two largest units", function()
    assert.equals("0s", duration.format(0))
    assert.equals("59s", duration.format(59))
    assert.equals("1m 1s", duration.format(61))
    assert.equals("1d 1h", duration.format(90061))
    assert.equals("1d 1h 1m", duration.format(90061, 3))
  end)
end)
