#!/usr/bin/env node
'use strict';
// Plays the client side of a wire capture (shared/fixtures/cytube-3.86 format:
// "<ms> <client> <in|out|evt> <frame>") against a server and prints what the
// server sent back, per client, as one JSON object on stdout:
//   {"clients":{"<name>":["<frame>", ...]}, "closed":{"<name>":true}}
//
//   node replay.js <server-url> <capture-file> [--scale F]
//
// Each client opens a raw WebSocket at the time of its first capture line and
// sends its `out` frames at their capture times (times multiplied by F). Like
// the clients that made the captures, it answers the open packet `0` with `40`
// and every ping `2` with `3` at once (those `out` lines are not replayed). A
// client whose capture says "websocket closed" is closed at that time unless
// the server closed it first.
const fs = require('fs');
const WebSocket = require('ws');

function parseCapture(text) {
  const lines = [];
  for (const raw of text.split('\n')) {
    const m = /^\s*(\d+)\s+(\S+)\s+(in|out|evt)\s(.*)$/.exec(raw);
    if (m) lines.push({ t: Number(m[1]), client: m[2], dir: m[3], frame: m[4].replace(/^\s+/, '') });
  }
  return lines;
}

function main() {
  const args = process.argv.slice(2);
  const scaleAt = args.indexOf('--scale');
  const scale = scaleAt >= 0 ? Number(args[scaleAt + 1]) : 1;
  const [serverUrl, file] = args.filter((a, i) => i !== scaleAt && i !== scaleAt + 1);
  if (!serverUrl || !file) {
    process.stderr.write('usage: node replay.js <server-url> <capture-file> [--scale F]\n');
    process.exit(2);
  }
  const lines = parseCapture(fs.readFileSync(file, 'utf8'));
  const wsUrl = `${serverUrl.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
  const clients = {};
  const received = {};
  const closed = {};
  const timers = [];

  const first = {};
  for (const l of lines) if (first[l.client] === undefined) first[l.client] = l.t;

  for (const name of Object.keys(first)) {
    received[name] = [];
    timers.push(setTimeout(() => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
      clients[name] = ws;
      // Frames due before the namespace is connected wait for `40{...}`:
      // the real server closes a socket that sends an event earlier.
      ws.pending = [];
      ws.connected = false;
      ws.on('message', (data, isBinary) => {
        const frame = isBinary ? `<binary ${data.length}>` : data.toString('utf8');
        received[name].push(frame);
        if (frame.startsWith('0')) ws.send('40');
        else if (frame === '2') ws.send('3');
        else if (frame.startsWith('40') && !ws.connected) {
          ws.connected = true;
          for (const f of ws.pending.splice(0)) ws.send(f);
        }
      });
      ws.on('close', () => { closed[name] = true; });
      ws.on('error', (err) => { received[name].push(`<error ${err.message}>`); });
    }, Math.max(0, (first[name] - 10) * scale)));
  }

  let last = 0;
  for (const l of lines) {
    last = Math.max(last, l.t);
    if (l.dir === 'out' && l.frame !== '40' && l.frame !== '3') {
      timers.push(setTimeout(() => {
        const ws = clients[l.client];
        if (ws && ws.readyState === WebSocket.OPEN && ws.connected) ws.send(l.frame);
        else if (ws && ws.readyState <= WebSocket.OPEN) ws.pending.push(l.frame);
      }, l.t * scale));
    } else if (l.dir === 'evt' && /websocket closed/.test(l.frame)) {
      timers.push(setTimeout(() => {
        const ws = clients[l.client];
        if (ws && ws.readyState === WebSocket.OPEN) ws.close();
      }, l.t * scale + 50));
    }
  }

  setTimeout(() => {
    for (const ws of Object.values(clients)) if (ws.readyState === WebSocket.OPEN) ws.terminate();
    process.stdout.write(`${JSON.stringify({ clients: received, closed })}\n`);
    process.exit(0);
  }, last * scale + 600);
}

main();
