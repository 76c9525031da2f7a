'use strict';
// Benchmark drivers inside the test server (used by bench/e2e.js through
// the control API; see README "Control API"). They run in the server's own
// event loop so that no HTTP round trip sits between two messages.
//
//   POST /control/flood  {channel, count, users?, rate?, tag?}
//       starts sending `count` chatMsg lines into the room from `users`
//       virtual users (default 1000): as fast as the transport takes them
//       (rate 0, the default: a chunk, then wait until every member's socket
//       has drained below a bound) or `rate` lines per second. Each line has
//       a distinct text ("<tag> <i> ..."), so a store that dedupes on
//       (time, user, text) keeps every one. Answers {ok, id}.
//   GET  /control/flood?id=  {id, channel, count, sent, done, t_first, t_last, stopped}
//       (times are Date.now() ms of the first and last line sent)
//   POST /control/flood-stop {id}: stops it early.
//
//   POST /control/probe  {channel, bot, count, spacing_ms?, text?, users?, timeout_ms?}
//       a reply-latency probe: `count` times, a virtual user (round robin
//       over `users` names) says `text` (default "!uptime"); the time from
//       that line's broadcast to the next chatMsg the client logged in as
//       `bot` sends in that channel is one sample. The next line goes out
//       `spacing_ms` after the previous one and never before its reply came
//       (or `timeout_ms` passed: a missing reply). Answers {ok, id}.
//   GET  /control/probe?id=  {id, done, sent, samples_ms: [...], missing, replies}
const { injectChat } = require('./chat');

const LOW_WATER = 256 * 1024; // bytes buffered towards the slowest member before we wait
const CHUNK = 200;
const HIGH_WATER = 4 * 1024 * 1024; // paced floods pause above this backlog // lines per turn when flooding at full speed

let nextId = 1;
const floods = new Map();
const probes = new Map();

function socketBacklog(session) {
  const conn = session.socket && session.socket.conn;
  if (!conn) return 0;
  let n = (conn.writeBuffer ? conn.writeBuffer.length : 0) * 128;
  const ws = conn.transport && conn.transport.socket;
  if (ws && typeof ws.bufferedAmount === 'number') n += ws.bufferedAmount;
  return n;
}

function roomBacklog(ch) {
  let max = 0;
  for (const s of ch.sessions) max = Math.max(max, socketBacklog(s));
  return max;
}

function floodLine(f, i) {
  const user = `user${i % f.users}`;
  return {
    username: user,
    msg: `${f.tag} ${i} from ${user}: the quick brown fox jumps over the lazy dog`,
    meta: {},
    time: Date.now(),
  };
}

function sendOne(f, ch) {
  const m = floodLine(f, f.sent);
  if (f.sent === 0) f.t_first = m.time;
  ch.sendMessage(m);
  f.sent++;
  f.t_last = m.time;
}

function runFlood(world, f) {
  const tick = () => {
    if (f.stopped || f.sent >= f.count) {
      f.done = true;
      return;
    }
    const ch = world.getChannel(f.channel, false);
    if (!ch || ch.closed) {
      f.stopped = true;
      f.done = true;
      f.error = 'channel gone';
      return;
    }
    if (f.rate > 0) {
      // Paced: catch up to where the clock says we should be.
      // A member that cannot keep up is not buried: past HIGH_WATER bytes
      // waiting, this turn sends nothing (the status shows the shortfall).
      const due = Math.min(f.count, Math.floor(((Date.now() - f.t_start) / 1000) * f.rate) + 1);
      if (roomBacklog(ch) <= HIGH_WATER) {
        const cap = f.sent + Math.max(1, Math.ceil(f.rate / 20)); // at most 50 ms worth at once
        while (f.sent < due && f.sent < cap) sendOne(f, ch);
      }
      setTimeout(tick, 5);
      return;
    }
    if (roomBacklog(ch) > LOW_WATER) {
      setTimeout(tick, 1);
      return;
    }
    for (let k = 0; k < CHUNK && f.sent < f.count; k++) sendOne(f, ch);
    setImmediate(tick);
  };
  f.t_start = Date.now();
  tick();
}

function describeFlood(world, f) {
  const { id, channel, count, sent, done, t_first, t_last, stopped, rate, error } = f;
  const ch = world.getChannel(channel, false);
  // backlog: bytes (estimated) waiting towards the slowest member right now.
  return { id, channel, count, sent, done, t_first, t_last, stopped, rate, error: error || null,
    backlog: ch ? roomBacklog(ch) : 0, server_rss_mb: Math.round(process.memoryUsage().rss / 1048576) };
}

// Replies are spotted on the recorder: every event a client sends passes
// through world.recorder.record (world.js), so wrap it once.
function hookRecorder(world) {
  if (world.recorder.benchHooked) return;
  const rec = world.recorder;
  const orig = rec.record.bind(rec);
  rec.benchHooked = true;
  rec.record = (client, user, channel, event, data) => {
    const entry = orig(client, user, channel, event, data);
    if (event === 'chatMsg' && probes.size > 0) {
      const now = process.hrtime.bigint();
      for (const p of probes.values()) {
        if (p.done || !p.waiting) continue;
        const ch = channel || (world.sessions.get(client) && world.sessions.get(client).channel
          && world.sessions.get(client).channel.name);
        if (ch !== p.channel || typeof user !== 'string' || user.toLowerCase() !== p.bot) continue;
        p.replies++;
        p.waiting = false;
        p.samples_ms.push(Number(now - p.sentAt) / 1e6);
        if (p.onReply) p.onReply();
      }
    }
    return entry;
  };
}

function runProbe(world, p) {
  let timer = null;
  const next = () => {
    timer = null;
    if (p.done) return;
    if (p.sent >= p.count) {
      p.done = true;
      return;
    }
    const ch = world.getChannel(p.channel, false);
    if (!ch || ch.closed) {
      p.done = true;
      p.error = 'channel gone';
      return;
    }
    const user = p.users[p.sent % p.users.length];
    const t0 = Date.now();
    p.waiting = true;
    p.sentAt = process.hrtime.bigint();
    injectChat(ch, { username: user, msg: p.text });
    p.sent++;
    // Next line: spacing after this one, but not before the reply (or timeout).
    let spaced = false;
    const go = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      p.onReply = null;
      next();
    };
    p.onReply = () => {
      if (spaced) setImmediate(go);
    };
    timer = setTimeout(() => {
      spaced = true;
      if (!p.waiting) return go();
      timer = setTimeout(() => {
        if (p.waiting) {
          p.waiting = false;
          p.missing++;
        }
        go();
      }, Math.max(0, p.timeout_ms - (Date.now() - t0)));
    }, p.spacing_ms);
  };
  next();
}

function describeProbe(p, withSamples) {
  const { id, channel, count, sent, done, missing, replies, error } = p;
  const out = { id, channel, count, sent, done, missing, replies, error: error || null };
  if (withSamples) out.samples_ms = p.samples_ms;
  return out;
}

function routes(HttpError, channelName) {
  const idOf = (q, map) => {
    const id = Number(q.get ? q.get('id') : q.id);
    const v = map.get(id);
    if (!v) throw new HttpError(404, `no such id ${JSON.stringify(id)}`);
    return v;
  };
  const posInt = (v, name, def) => {
    if (v === undefined) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new HttpError(400, `"${name}" must be a number >= 0`);
    return Math.floor(v);
  };
  return {
    'POST /control/flood': (world, body) => {
      const channel = channelName(body);
      const f = {
        id: nextId++,
        channel,
        count: posInt(body.count, 'count', 1000),
        users: Math.max(1, posInt(body.users, 'users', 1000)),
        rate: posInt(body.rate, 'rate', 0),
        tag: typeof body.tag === 'string' && body.tag ? body.tag : `flood${nextId}`,
        sent: 0,
        done: false,
        stopped: false,
        t_first: null,
        t_last: null,
      };
      world.getChannel(channel, true);
      floods.set(f.id, f);
      runFlood(world, f);
      return { ok: true, id: f.id };
    },
    'GET /control/flood': (world, q) => describeFlood(world, idOf(q, floods)),
    'POST /control/flood-stop': (world, body) => {
      const f = idOf(body, floods);
      f.stopped = true;
      return { ok: true, sent: f.sent };
    },
    'POST /control/probe': (world, body) => {
      const channel = channelName(body);
      if (typeof body.bot !== 'string' || !body.bot) throw new HttpError(400, '"bot" (string) is required');
      hookRecorder(world);
      const users = Array.isArray(body.users) && body.users.length ? body.users.map(String) : ['prober'];
      const p = {
        id: nextId++,
        channel,
        bot: body.bot.toLowerCase(),
        count: posInt(body.count, 'count', 100),
        spacing_ms: posInt(body.spacing_ms, 'spacing_ms', 200),
        timeout_ms: posInt(body.timeout_ms, 'timeout_ms', 5000),
        text: typeof body.text === 'string' && body.text ? body.text : '!uptime',
        users,
        sent: 0,
        replies: 0,
        missing: 0,
        samples_ms: [],
        done: false,
        waiting: false,
      };
      world.getChannel(channel, true);
      probes.set(p.id, p);
      runProbe(world, p);
      return { ok: true, id: p.id };
    },
    'GET /control/probe': (world, q) => describeProbe(idOf(q, probes), q.get('samples') !== '0'),
  };
}

module.exports = { routes };
