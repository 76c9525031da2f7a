#!/usr/bin/env node
'use strict';
// The baseline of the end-to-end benchmarks: a bare socket.io-client "bot"
// that joins one room (websocket transport, as Daz), logs in as a guest and
// only counts chatMsg events. Its RSS is the memory baseline, its receive
// rate the transport's own limit.
//
//   node bench/consumer.js <server-url> <channel> [--name guest] [--expect N]
//
// stdout, one JSON object per line:
//   {"event":"joined","t":ms}                       first userlist received
//   {"event":"count","n":N,"t_first":ms,"t_last":ms} once N chatMsg arrived (--expect)
//   {"event":"rss","rss_kb":K}                      whenever it gets SIGUSR2
const path = require('path');
const { createRequire } = require('module');

const serverDir = path.join(__dirname, '..', 'spec', 'support', 'cytube-server');
const { io } = createRequire(path.join(serverDir, 'package.json'))('socket.io-client');

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const args = process.argv.slice(2);
const pos = [];
const opts = { name: `base${process.pid}`, expect: 0 };
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--name') opts.name = args[++i];
  else if (args[i] === '--expect') opts.expect = Number(args[++i]);
  else pos.push(args[i]);
}
if (pos.length !== 2) {
  process.stderr.write('usage: consumer.js <server-url> <channel> [--name guest] [--expect N]\n');
  process.exit(1);
}
const [url, channel] = pos;

let n = 0;
let tFirst = 0;
let joined = false;
const socket = io(url, { transports: ['websocket'], reconnection: false });
socket.on('connect', () => socket.emit('joinChannel', { name: channel }));
socket.on('userlist', () => {
  if (joined) return;
  joined = true;
  socket.emit('login', { name: opts.name });
  out({ event: 'joined', t: Date.now() });
});
socket.on('chatMsg', () => {
  if (n === 0) tFirst = Date.now();
  n++;
  if (n === opts.expect) out({ event: 'count', n, t_first: tFirst, t_last: Date.now() });
});
socket.on('connect_error', (e) => {
  out({ event: 'error', reason: e.message });
  process.exit(5);
});
socket.on('disconnect', (reason) => out({ event: 'disconnect', reason }));
process.on('SIGUSR2', () => out({ event: 'rss', rss_kb: Math.round(process.memoryUsage().rss / 1024), n }));
process.on('SIGTERM', () => {
  socket.close();
  process.exit(0);
});
