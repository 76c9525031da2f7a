#!/usr/bin/env node
'use strict';
// Test CyTube server for the Daz specs.
//
//   node server.js --port 0 [--ping-interval ms --ping-timeout ms --accounts file ...]
//
// One HTTP server on 127.0.0.1 carries
//   GET  /socketconfig/<channel>.json   discovery, as CyTube answers it
//   GET  /moved/socketconfig/...        a 301 to /socketconfig/... (relative Location)
//   GET  /loop/socketconfig/...         a 302 to itself, for ever
//   GET  /chunked/socketconfig/...      the discovery answer without a length, chunked
//   /socket.io/                         the real socket.io v4 server
//   /control/...                        loopback control API (control.js)
// When listening it prints exactly one line to stdout:
//   {"ready":true,"port":N}
// Everything else it logs goes to stderr. `node server.js --help` lists flags.
const http = require('http');
const options = require('./options');
const { Accounts } = require('./accounts');
const { World } = require('./world');
const control = require('./control');
const { VALID_CHANNEL_NAME } = require('./handlers');

function makeLog(config) {
  const write = (level, msg) => process.stderr.write(`[cytube-test] ${level} ${msg}\n`);
  return {
    error: (msg) => write('error', msg),
    info: (msg) => write('info', msg),
    debug: (msg) => { if (config.verbose) write('debug', msg); },
  };
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// GET /socketconfig/<channel>.json (src/web/routes/socketconfig.js): any valid
// name gets the server list, even a channel nobody joined yet; an invalid one
// is a 404 with CyTube's error text.
function socketConfig(res, rawName, port, secure, host, chunked) {
  let name;
  try {
    name = decodeURIComponent(rawName);
  } catch (e) {
    name = rawName;
  }
  if (!VALID_CHANNEL_NAME.test(name)) {
    sendJson(res, 404, { error: `Channel "${name}" does not exist.` });
    return;
  }
  const body = { servers: [{ url: `${secure ? 'https' : 'http'}://${host}:${port}`, secure }] };
  if (!chunked) {
    sendJson(res, 200, body);
    return;
  }
  // No Content-Length and two writes: Node sends it chunked.
  const text = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
  res.write(text.slice(0, 10));
  setTimeout(() => res.end(text.slice(10)), 20);
}

function main() {
  let parsed;
  try {
    parsed = options.parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`server.js: ${e.message}\n${options.usage()}\n`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(`${options.usage()}\n`);
    return;
  }
  const config = parsed.config;
  const log = makeLog(config);

  let accounts;
  try {
    accounts = Accounts.fromFile(config.accounts);
  } catch (e) {
    process.stderr.write(`server.js: cannot load accounts from ${config.accounts}: ${e.message}\n`);
    process.exit(2);
  }

  let Server;
  try {
    ({ Server } = require('socket.io'));
  } catch (e) {
    process.stderr.write(`server.js: socket.io is not installed; run \`npm ci\` in ${__dirname}\n`);
    process.exit(2);
  }

  const world = new World(config, accounts, log);
  let port = 0;

  // --tls-cert/--tls-key: the same server over HTTPS and WSS.
  let tls = null;
  if (config.tlsCert || config.tlsKey) {
    const fs = require('fs');
    try {
      tls = { cert: fs.readFileSync(config.tlsCert), key: fs.readFileSync(config.tlsKey) };
    } catch (e) {
      process.stderr.write(`server.js: cannot read the TLS certificate/key: ${e.message}\n`);
      process.exit(2);
    }
  }
  const handler = (req, res) => {
    let url;
    try {
      url = new URL(req.url, 'http://127.0.0.1');
    } catch (e) {
      sendJson(res, 400, { error: 'bad request URL' });
      return;
    }
    if (url.pathname.startsWith('/control/')) {
      control.handle(world, req, res, url);
      return;
    }
    // Discovery the long way round, for daz's HTTP client specs.
    const odd = /^\/(moved|loop|chunked)(\/socketconfig\/([^/]+)\.json)$/.exec(url.pathname);
    if (odd && req.method === 'GET') {
      if (odd[1] === 'chunked') {
        socketConfig(res, odd[3], port, tls !== null, config.publicHost, true);
      } else {
        res.writeHead(odd[1] === 'moved' ? 301 : 302, { Location: odd[1] === 'moved' ? odd[2] : url.pathname });
        res.end();
      }
      return;
    }
    const sc = /^\/socketconfig\/([^/]+)\.json$/.exec(url.pathname);
    if (sc && (req.method === 'GET' || req.method === 'HEAD')) {
      socketConfig(res, sc[1], port, tls !== null, config.publicHost);
      return;
    }
    const page = /^\/r\/([^/]+)$/.exec(url.pathname);
    if (page && req.method === 'GET') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>test CyTube</title><p>Channel page of the test server.</p>\n');
      return;
    }
    sendJson(res, 404, { error: 'Not found' });
  };
  const httpServer = tls ? require('https').createServer(tls, handler) : http.createServer(handler);
  httpServer.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  // Engine options of CyTube's src/io/ioserver.js.
  const io = new Server(httpServer, {
    path: '/socket.io/',
    pingInterval: config.pingInterval,
    pingTimeout: config.pingTimeout,
    connectTimeout: config.connectTimeout,
    maxHttpBufferSize: 1 << 20,
    perMessageDeflate: false,
    httpCompression: false,
    allowEIO3: true,
    serveClient: false,
    transports: ['polling', 'websocket'],
  });
  world.io = io;
  io.use((socket, next) => world.connectMiddleware(socket, next));
  io.on('connection', (socket) => {
    try {
      world.onConnection(socket);
    } catch (err) {
      log.error(`connection setup failed: ${err && err.stack ? err.stack : err}`);
    }
  });
  io.engine.on('connection_error', (err) => log.debug(`engine connection error: ${err.message}`));

  // A test server must outlive odd input: log, do not die.
  process.on('uncaughtException', (err) => log.error(`uncaught: ${err && err.stack ? err.stack : err}`));
  process.on('unhandledRejection', (err) => log.error(`unhandled rejection: ${err && err.stack ? err.stack : err}`));

  const shutdown = () => {
    io.close();
    httpServer.close();
    // Open WebSockets may keep close() waiting; do not linger.
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  httpServer.on('error', (err) => {
    process.stderr.write(`server.js: ${err.message}\n`);
    process.exit(1);
  });
  httpServer.listen(config.port, config.host, () => {
    port = httpServer.address().port;
    process.stdout.write(`${JSON.stringify({ ready: true, port })}\n`);
  });
}

main();
