#!/usr/bin/env node
'use strict';
// Smoke client: a plain socket.io-client session against a CyTube(-like)
// server, the way a bot would do it.
//
//   node smoke-client.js <server-url> <channel> <username> [password]
//        [--timeout ms] [--wait ms] [--text "chat line"]
//
// Steps: discovery (GET /socketconfig/<channel>.json), WebSocket-only
// connect, joinChannel, wait for `userlist` (everything before it is replay),
// wait --wait ms, login (guest when no password), send a chat line full of
// characters CyTube escapes, wait for its own echo, exit.
//
// Output: one JSON object per line on stdout:
//   {"event":"discovery","url":...}      {"event":"connect","id":...}
//   {"event":"userlist","size":N}        {"event":"login","data":{...}}
//   {"event":"sent","msg":...}           {"event":"echo","data":{...}}
//   {"event":"done","ok":true}           {"event":"error","reason":...}
// Exit status: 0 echo seen; 1 usage; 2 discovery failed; 3 login refused;
// 4 timeout; 5 connection error, kick or disconnect.
const { io } = require('socket.io-client');

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function parseArgs(argv) {
  const pos = [];
  const opts = { timeout: 10000, wait: 200, text: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--timeout' || a === '--wait') opts[a.substring(2)] = Number(argv[++i]);
    else if (a === '--text') opts.text = argv[++i];
    else pos.push(a);
  }
  if (pos.length < 3 || pos.length > 4 || !Number.isFinite(opts.timeout) || !Number.isFinite(opts.wait)) return null;
  return { url: pos[0].replace(/\/+$/, ''), channel: pos[1], name: pos[2], password: pos[3], ...opts };
}

let socket = null;
let finished = false;

function finish(code, reason) {
  if (finished) return;
  finished = true;
  if (code === 0) out({ event: 'done', ok: true });
  else out({ event: 'error', code, reason });
  if (socket) socket.close();
  // Let stdout drain, then go, whatever is still open.
  setTimeout(() => process.exit(code), 20).unref();
  setTimeout(() => process.exit(code), 500);
}

async function discover(base, channel) {
  const res = await fetch(`${base}/socketconfig/${encodeURIComponent(channel)}.json`, {
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json().catch(() => null);
  if (res.status !== 200 || !body || !Array.isArray(body.servers) || body.servers.length === 0) {
    throw new Error(`discovery answered ${res.status} ${JSON.stringify(body)}`);
  }
  // As a bot should: the first secure entry, else the first one.
  return (body.servers.find((s) => s.secure === true) || body.servers[0]).url;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args) {
    process.stderr.write('usage: smoke-client.js <server-url> <channel> <username> [password] [--timeout ms] [--wait ms] [--text line]\n');
    process.exit(1);
  }
  setTimeout(() => finish(4, `timed out after ${args.timeout} ms`), args.timeout);

  let serverUrl;
  try {
    serverUrl = await discover(args.url, args.channel);
  } catch (e) {
    finish(2, `discovery failed: ${e.message}`);
    return;
  }
  out({ event: 'discovery', url: serverUrl });

  // A nonce without _ * ` ~ so the default chat filters leave it alone.
  const nonce = `n${Math.random().toString(36).substring(2, 10)}`;
  const text = `${args.text !== null ? args.text : 'smoke <b>bold</b> & "quoted" \'single\' (paren)'} ${nonce}`;
  let inRoom = false;
  let myName = null;

  socket = io(serverUrl, { transports: ['websocket'], reconnection: false, timeout: args.timeout });

  socket.on('connect', () => {
    out({ event: 'connect', id: socket.id });
    socket.emit('joinChannel', { name: args.channel });
  });
  socket.on('connect_error', (err) => finish(5, `connect_error: ${err.message}`));
  socket.on('disconnect', (reason) => finish(5, `disconnected: ${reason}`));
  socket.on('kick', (data) => finish(5, `kicked: ${JSON.stringify(data)}`));
  socket.on('errorMsg', (data) => out({ event: 'errorMsg', data }));

  socket.on('userlist', (list) => {
    out({ event: 'userlist', size: Array.isArray(list) ? list.length : null });
    if (inRoom) return; // re-sent after a rank change
    inRoom = true;
    setTimeout(() => {
      const login = { name: args.name };
      if (args.password !== undefined) login.pw = args.password;
      socket.emit('login', login);
    }, args.wait);
  });

  socket.on('login', (data) => {
    out({ event: 'login', data });
    if (!data || data.success !== true) {
      finish(3, `login refused: ${data && data.error}`);
      return;
    }
    myName = data.name;
    socket.emit('chatMsg', { msg: text, meta: {} });
    out({ event: 'sent', msg: text });
  });

  socket.on('chatMsg', (data) => {
    if (!inRoom || myName === null || !data) return; // replay or not ours yet
    if (data.username === myName && typeof data.msg === 'string' && data.msg.endsWith(nonce)) {
      out({ event: 'echo', data });
      finish(0);
    }
  });
}

main().catch((e) => finish(5, `crashed: ${e && e.stack ? e.stack : e}`));
