'use strict';
// Loopback control API under /control/, JSON in and out. Lets specs drive the
// server: inject events and chat, read what clients sent, kick or drop
// connections, change channel state, reset everything.
const crypto = require('crypto');
const { injectChat } = require('./chat');
const { compileFilters } = require('./escape');
const { VALID_CHANNEL_NAME } = require('./handlers');
const { RUNTIME_KEYS } = require('./options');

const MAX_BODY = 1 << 20;

// Socket.IO refuses to emit these names (it throws).
const RESERVED_EVENTS = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function isLoopback(address) {
  if (!address) return false;
  const a = address.replace(/^::ffff:/, '');
  return a === '::1' || /^127\./.test(a);
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function readJson(req) {
  const text = await readBody(req);
  if (text.trim() === '') return {};
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `bad JSON: ${e.message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'body must be a JSON object');
  }
  return body;
}

function requireString(body, key) {
  if (typeof body[key] !== 'string' || body[key] === '') throw new HttpError(400, `"${key}" (string) is required`);
  return body[key];
}

function channelName(body, key = 'channel') {
  const name = requireString(body, key);
  if (!VALID_CHANNEL_NAME.test(name)) throw new HttpError(400, `invalid channel name ${JSON.stringify(name)}`);
  return name.toLowerCase();
}

function optionalNumber(params, key) {
  const v = params.get(key);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new HttpError(400, `"${key}" must be a number`);
  return n;
}

function snakeToCamel(s) {
  return s.replace(/_([a-z])/g, (m, c) => c.toUpperCase());
}

// method + path -> handler(world, body | searchParams). GET handlers get the
// query parameters, POST handlers the parsed JSON body.
const ROUTES = {
  'GET /control/health': (world) => ({
    ok: true,
    sessions: world.sessions.size,
    channels: [...world.channels.keys()],
    received: world.recorder.seq,
    received_dropped: world.recorder.dropped,
  }),

  'GET /control/received': (world, q) => world.recorder.query({
    channel: q.get('channel') === null ? undefined : q.get('channel').toLowerCase(),
    since: optionalNumber(q, 'since'),
    event: q.get('event') === null ? undefined : q.get('event'),
    client: q.get('client') === null ? undefined : q.get('client'),
  }),

  // How sockets ended: [{client, user, channel, reason, t}], oldest first.
  'GET /control/disconnects': (world) => world.disconnects,

  'GET /control/users': (world, q) => {
    const name = q.get('channel');
    if (name === null) throw new HttpError(400, '"channel" query parameter is required');
    const ch = world.getChannel(name, false);
    return ch ? ch.sessions.map((s) => s.describe()) : [];
  },

  'GET /control/channel': (world, q) => {
    const name = q.get('channel');
    if (name === null) throw new HttpError(400, '"channel" query parameter is required');
    const ch = world.getChannel(name, false);
    if (!ch) throw new HttpError(404, `no channel ${JSON.stringify(name)}`);
    return ch.describe();
  },

  'GET /control/sessions': (world) => [...world.sessions.values()].map((s) => ({
    ...s.describe(),
    channel: s.channel ? s.channel.name : null,
  })),

  // {channel?, event, data?, to?, client?}: to a room, one user, one socket,
  // or (no channel) every connected socket.
  'POST /control/emit': (world, body) => {
    const event = requireString(body, 'event');
    if (RESERVED_EVENTS.has(event)) throw new HttpError(400, `"${event}" is reserved by Socket.IO and cannot be emitted`);
    const channel = body.channel === undefined ? undefined : channelName(body);
    const targets = world.selectSessions({ channel, name: body.to, client: body.client });
    for (const s of targets) s.emit(event, body.data === undefined ? undefined : body.data);
    return { ok: true, sent: targets.length };
  },

  // {channel, name, reason?, by?}: kick event then Socket.IO disconnect; with
  // `by`, moderators also get the "[server] <by> kicked <name>" notice.
  'POST /control/kick': (world, body) => {
    const channel = channelName(body);
    const name = requireString(body, 'name');
    const targets = world.selectSessions({ channel, name });
    const reason = body.reason === undefined ? '' : String(body.reason);
    for (const s of targets) {
      const shown = s.name;
      s.kick(reason);
      const ch = world.getChannel(channel, false);
      if (ch && typeof body.by === 'string') ch.modMessage(`${body.by} kicked ${shown}`);
    }
    return { ok: true, kicked: targets.length };
  },

  // {channel, name} | {client} | {all: true}: cut the transport, no goodbye.
  'POST /control/drop': (world, body) => {
    let targets;
    if (body.all === true) targets = [...world.sessions.values()];
    else if (typeof body.client === 'string') targets = world.selectSessions({ client: body.client });
    else targets = world.selectSessions({ channel: channelName(body), name: requireString(body, 'name') });
    for (const s of targets) s.drop();
    return { ok: true, dropped: targets.length };
  },

  // {channel, name} | {client}: the server goes silent towards that socket:
  // no more Engine.IO pings (and it stops waiting for pongs), so a client
  // that watches pingInterval + pingTimeout must notice on its own.
  'POST /control/silence': (world, body) => {
    const targets = typeof body.client === 'string' ? world.selectSessions({ client: body.client })
      : world.selectSessions({ channel: channelName(body), name: requireString(body, 'name') });
    for (const s of targets) s.silence();
    return { ok: true, silenced: targets.length };
  },

  // {channel, name, frames: [string], binary?: bool, size?: n}: raw WebSocket
  // frames to one socket, bypassing Socket.IO (malformed input for clients).
  // `size` adds one text frame of that many bytes ("42[" then "x"s).
  'POST /control/raw': (world, body) => {
    const targets = world.selectSessions({ channel: channelName(body), name: requireString(body, 'name') });
    const frames = Array.isArray(body.frames) ? body.frames : [];
    let sent = 0;
    for (const s of targets) {
      for (const f of frames) if (s.sendRaw(String(f), body.binary === true)) sent++;
      if (typeof body.size === 'number' && body.size > 0 && s.sendRaw('42[' + 'x'.repeat(body.size - 3), false)) sent++;
    }
    return { ok: true, sockets: targets.length, sent };
  },

  // {channel, username, msg, rank?, modflair?, meta?, raw?}: a chat line from
  // anyone, present or not, escaped and filtered like a real one and kept for
  // replay. rank with modflair:true adds meta.modflair (rank >= 2 only).
  'POST /control/chat': (world, body) => {
    const ch = world.getChannel(channelName(body), true);
    const username = requireString(body, 'username');
    if (typeof body.msg !== 'string') throw new HttpError(400, '"msg" (string) is required');
    const meta = body.meta && typeof body.meta === 'object' ? body.meta : {};
    if (body.modflair === true && typeof body.rank === 'number' && body.rank >= 2) meta.modflair = body.rank;
    const msgobj = injectChat(ch, { username, msg: body.msg, meta, raw: body.raw === true });
    return { ok: true, message: msgobj };
  },

  'POST /control/reset': (world) => {
    world.reset();
    return { ok: true };
  },

  // {channel, ...opts}: merged into channelOpts, which is re-broadcast.
  'POST /control/channel-opts': (world, body) => {
    const ch = world.getChannel(channelName(body), true);
    const changes = { ...body };
    delete changes.channel;
    ch.setOptions(changes);
    return { ok: true, opts: ch.opts };
  },

  // {channel, ...permissions}: merged into setPermissions, re-broadcast.
  'POST /control/permissions': (world, body) => {
    const ch = world.getChannel(channelName(body), true);
    const changes = { ...body };
    delete changes.channel;
    ch.setPermissions(changes);
    return { ok: true, permissions: ch.permissions };
  },

  // {channel, name, rank}: channel rank now (rank, setUserRank) and on later joins.
  'POST /control/rank': (world, body) => {
    const ch = world.getChannel(channelName(body), true);
    const name = requireString(body, 'name');
    if (typeof body.rank !== 'number') throw new HttpError(400, '"rank" (number) is required');
    const present = ch.setChannelRank(name, body.rank);
    return { ok: true, present };
  },

  // {channel, motd}
  'POST /control/motd': (world, body) => {
    const ch = world.getChannel(channelName(body), true);
    ch.setMotd(typeof body.motd === 'string' ? body.motd : '');
    return { ok: true };
  },

  // {channel, filters: [{name, source, flags, replace, active, filterlinks}]}
  'POST /control/filters': (world, body) => {
    const ch = world.getChannel(channelName(body), true);
    if (!Array.isArray(body.filters)) throw new HttpError(400, '"filters" (array) is required');
    ch.filters = compileFilters(body.filters);
    return { ok: true, count: ch.filters.length };
  },

  // {title, text, from} sets (and broadcasts) the announcement; {} clears it.
  'POST /control/announcement': (world, body) => {
    if (typeof body.text !== 'string') {
      world.announcement = null;
      return { ok: true };
    }
    world.announcement = {
      id: crypto.randomUUID(),
      title: typeof body.title === 'string' ? body.title : '',
      text: body.text,
      from: typeof body.from === 'string' ? body.from : '[server]',
    };
    if (world.io) world.io.emit('announcement', world.announcement);
    return { ok: true, announcement: world.announcement };
  },

  // {name, password, rank?, channels?, profile?}: add or replace an account.
  'POST /control/accounts': (world, body) => {
    requireString(body, 'name');
    requireString(body, 'password');
    let account;
    try {
      account = world.accounts.put(body);
    } catch (e) {
      throw new HttpError(400, e.message);
    }
    return { ok: true, name: account.name };
  },

  'GET /control/accounts': (world) => world.accounts.list(),

  // {usercount_throttle: 0, guest_login_delay: 60000, ...}: change run-time
  // settings (see options.js RUNTIME_KEYS); returns the whole config.
  'POST /control/config': (world, body) => {
    for (const [k, v] of Object.entries(body)) {
      const key = snakeToCamel(k);
      if (!RUNTIME_KEYS.includes(key)) throw new HttpError(400, `unknown or fixed setting ${JSON.stringify(k)}`);
      if (key === 'verbose') world.config.verbose = !!v;
      else if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new HttpError(400, `"${k}" must be a number >= 0`);
      else world.config[key] = v;
    }
    if (body.conn_burst !== undefined || body.connBurst !== undefined) world.connBuckets.clear();
    return { ok: true, config: world.config };
  },
};

// Benchmark drivers (bench.js): flood and reply-latency probes.
Object.assign(ROUTES, require('./bench').routes(HttpError, channelName));

const KNOWN_PATHS = new Set(Object.keys(ROUTES).map((r) => r.split(' ')[1]));

// Handles a request whose path starts with /control/.
async function handle(world, req, res, url) {
  try {
    if (!isLoopback(req.socket.remoteAddress)) throw new HttpError(403, 'control API is loopback only');
    const route = ROUTES[`${req.method} ${url.pathname}`];
    if (!route) {
      if (KNOWN_PATHS.has(url.pathname)) throw new HttpError(405, `${req.method} not allowed on ${url.pathname}`);
      throw new HttpError(404, `no control route ${url.pathname}`);
    }
    const input = req.method === 'POST' ? await readJson(req) : url.searchParams;
    if (world.config.verbose) world.log.info(`control ${req.method} ${url.pathname}`);
    sendJson(res, 200, route(world, input));
  } catch (err) {
    if (err instanceof HttpError) {
      sendJson(res, err.status, { error: err.message });
    } else {
      world.log.error(`control ${req.method} ${url.pathname} failed: ${err && err.stack ? err.stack : err}`);
      sendJson(res, 500, { error: String(err && err.message ? err.message : err) });
    }
  }
}

module.exports = { handle, ROUTES };
