// The loopback HTTP test server for the Lua `http` API and the plugins on it
// (spec/support/httpserver.lua starts it). Node's built-in http and https
// only. Prints one JSON line {"port":..,"https_port":..} when listening.
//
//   node server.js [--cert FILE --key FILE]
//
// Routes (same on http and https):
//   /title?t=TEXT          an HTML page whose <title> is TEXT
//   /og?t=TEXT             a page with only <meta property="og:title">
//   /html?b=HTML           that HTML as text/html
//   /page/NAME             a fixed page (PAGES below)
//   /slow?ms=N             answers after N ms
//   /endless               a chunked body that never ends
//   /big?bytes=N           a body of N bytes with Content-Length
//   /chunked?n=N&size=S    N chunks of S bytes, no Content-Length
//   /redirect?to=URL       302 to URL
//   /redirects?n=N         N redirects, then 200 "end"
//   /status/NNN            that status, a short body
//   /echo                  JSON {method, url, headers, body}
//   /json, /badjson        valid and broken JSON
//   POST /hook/NAME        a webhook receiver: records the post, answers the
//                          status set by POST /control/hook/NAME?status=N (204)
//   GET /control/posts/NAME  the posts recorded for NAME, oldest first
'use strict';
const http = require('http');
const https = require('https');
const fs = require('fs');

const args = process.argv.slice(2);
const arg = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };

// Fixed pages for the links plugin: /page/NAME.
const PAGES = {
  entities: '<html><head><title>\n   Caf&#233; &amp;\t  Bar  &lt;3\n</title></head></html>',
  slash: '<html><head><title>/me dances</title></head></html>',
  long: `<html><head><title>${'word '.repeat(100)}</title></head></html>`,
  og: '<html><head><meta content="The OG &quot;Title&quot;" property="og:title"><title>plain</title></head></html>',
  notitle: '<html><head></head><body>nothing</body></html>',
};
const hooks = {}; // name -> { status, posts: [] }
const hook = (name) => (hooks[name] = hooks[name] || { status: 204, posts: [] });

function send(res, status, type, body, extra) {
  res.writeHead(status, Object.assign({ 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) }, extra || {}));
  res.end(body);
}

function handler(req, res) {
  const u = new URL(req.url, 'http://x');
  const q = (k) => u.searchParams.get(k);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const p = u.pathname;
    let m;
    if (p === '/title' || p === '/title.png') return send(res, 200, 'text/html; charset=utf-8',
      `<!doctype html><html><head><meta charset="utf-8"><title>${q('t') || ''}</title></head><body>hi</body></html>`);
    if (p === '/og') return send(res, 200, 'text/html',
      `<html><head><meta property="og:title" content="${q('t') || ''}"></head><body></body></html>`);
    if ((m = p.match(/^\/page\/(\w+)$/)) && PAGES[m[1]]) return send(res, 200, 'text/html', PAGES[m[1]]);
    if (p === '/html') return send(res, 200, 'text/html', q('b') || '');
    if (p === '/slow') return setTimeout(() => send(res, 200, 'text/plain', 'slow'), Number(q('ms') || 1000));
    if (p === '/endless') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      const piece = 'x'.repeat(16384);
      const t = setInterval(() => { if (!res.destroyed) res.write(piece); }, 5);
      res.on('close', () => clearInterval(t));
      return;
    }
    if (p === '/big') return send(res, 200, 'application/octet-stream', 'x'.repeat(Number(q('bytes') || 0)));
    if (p === '/chunked') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      let n = Number(q('n') || 3);
      const piece = 'y'.repeat(Number(q('size') || 10));
      const next = () => { if (n-- > 0) { res.write(piece); setTimeout(next, 2); } else res.end(); };
      return next();
    }
    if (p === '/redirect') return send(res, 302, 'text/plain', 'moved', { Location: q('to') });
    if (p === '/redirects') {
      const n = Number(q('n') || 0);
      if (n <= 0) return send(res, 200, 'text/plain', 'end');
      return send(res, 302, 'text/plain', 'moved', { Location: `/redirects?n=${n - 1}` });
    }
    if ((m = p.match(/^\/status\/(\d+)$/))) return send(res, Number(m[1]), 'text/plain', `status ${m[1]}`);
    if (p === '/echo') return send(res, 200, 'application/json',
      JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }),
      { 'X-Multi': 'a', 'Set-Cookie': ['c1=1', 'c2=2'] });
    if (p === '/json') return send(res, 200, 'application/json', '{"ok":true,"n":[1,2]}');
    if (p === '/badjson') return send(res, 200, 'application/json', '{nope');
    if ((m = p.match(/^\/hook\/([\w-]+)$/)) && req.method === 'POST') {
      const h = hook(m[1]);
      h.posts.push({ t: Date.now(), headers: req.headers, body, answered: h.status });
      return send(res, h.status, 'text/plain', h.status < 300 ? '' : 'down');
    }
    if ((m = p.match(/^\/control\/hook\/([\w-]+)$/))) {
      hook(m[1]).status = Number(q('status') || 204);
      return send(res, 200, 'application/json', '{}');
    }
    if ((m = p.match(/^\/control\/posts\/([\w-]+)$/))) return send(res, 200, 'application/json', JSON.stringify(hook(m[1]).posts));
    send(res, 404, 'text/plain', 'not found');
  });
}

const plain = http.createServer(handler);
plain.keepAliveTimeout = 1000;
let secure = null;
if (arg('--cert')) {
  secure = https.createServer({ cert: fs.readFileSync(arg('--cert')), key: fs.readFileSync(arg('--key')) }, handler);
}
plain.listen(Number(arg('--port') || 0), '127.0.0.1', () => {
  const ready = () => console.log(JSON.stringify({ port: plain.address().port, https_port: secure ? secure.address().port : null }));
  if (secure) secure.listen(0, '127.0.0.1', ready); else ready();
});
process.on('SIGTERM', () => process.exit(0));
