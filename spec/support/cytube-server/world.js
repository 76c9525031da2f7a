'use strict';
// Everything the server knows: configuration, accounts, channels, connected
// sessions, the received-event log, and the per-IP bookkeeping (aliases,
// guest-login times, connection limiters).
const crypto = require('crypto');
const { Channel } = require('./channel');
const { Session } = require('./session');
const { Recorder } = require('./recorder');
const { TokenBucket } = require('./ratelimit');
const { dispatch } = require('./handlers');

class World {
  constructor(config, accounts, log) {
    this.config = config;
    this.accounts = accounts;
    this.log = log;
    this.io = null; // set once Socket.IO is attached
    this.recorder = new Recorder(config.logLimit);
    this.cloakSalt = crypto.randomBytes(8).toString('hex');
    this.sessions = new Map(); // socket id -> Session
    this.resetState();
  }

  resetState() {
    this.channels = new Map(); // lower name -> Channel
    this.aliases = new Map(); // ip -> [names], first seen first
    this.guestLogins = new Map(); // ip -> ms of last successful guest login
    this.connBuckets = new Map(); // ip -> TokenBucket (connection attempts)
    this.ipCount = new Map(); // ip -> open sockets
    this.announcement = null;
    this.disconnects = [];
  }

  // Forget all rooms, history, limiter state and the received log, and cut
  // every connection as a server restart would.
  reset() {
    for (const s of [...this.sessions.values()]) s.drop();
    for (const ch of this.channels.values()) ch.close();
    this.resetState();
    this.recorder.clear();
  }

  getChannel(name, create) {
    const lower = String(name).toLowerCase();
    let ch = this.channels.get(lower);
    if (!ch && create) {
      ch = new Channel(this, lower);
      this.channels.set(lower, ch);
    }
    return ch || null;
  }

  recordAlias(ip, name) {
    const list = this.aliases.get(ip) || [];
    if (!list.some((n) => n.toLowerCase() === name.toLowerCase())) list.push(name);
    this.aliases.set(ip, list);
  }

  aliasesFor(ip) {
    return (this.aliases.get(ip) || []).slice();
  }

  // Moderators see a cloaked IP such as "yFA.j8g.iXh.gvS": a keyed hash,
  // stable for the life of the process.
  cloakIp(ip) {
    const h = crypto.createHmac('sha256', this.cloakSalt).update(ip).digest('base64').replace(/[+/=]/g, 'x');
    return [h.substring(0, 3), h.substring(3, 6), h.substring(6, 9), h.substring(9, 12)].join('.');
  }

  // ---- Socket.IO wiring ------------------------------------------------------

  // Connection middleware: the per-IP connection-attempt bucket (CyTube: 5,
  // then 0.1/s; off unless --conn-burst is given). A refusal reaches the
  // client as CONNECT_ERROR 44{"message":"Rate limit exceeded"}.
  connectMiddleware(socket, next) {
    const cfg = this.config;
    if (cfg.connBurst > 0) {
      const ip = (socket.handshake.address || '').replace(/^::ffff:/, '');
      let bucket = this.connBuckets.get(ip);
      if (!bucket) {
        bucket = new TokenBucket(cfg.connBurst, cfg.connRate);
        this.connBuckets.set(ip, bucket);
      }
      if (bucket.throttle()) {
        next(new Error('Rate limit exceeded'));
        return;
      }
    }
    next();
  }

  onConnection(socket) {
    const session = new Session(this, socket);
    this.sessions.set(session.id, session);
    this.log.debug(`connect ${session.id} from ${session.ip}`);

    socket.onAny((event, ...args) => {
      try {
        dispatch(session, event, args);
      } catch (err) {
        this.log.error(`handler for ${JSON.stringify(event)} failed: ${err && err.stack ? err.stack : err}`);
      }
    });
    socket.on('disconnect', (reason) => {
      try {
        this.onDisconnect(session, reason);
      } catch (err) {
        this.log.error(`disconnect cleanup failed: ${err && err.stack ? err.stack : err}`);
      }
    });

    const count = (this.ipCount.get(session.ip) || 0) + 1;
    this.ipCount.set(session.ip, count);
    if (this.config.ipConnectionLimit > 0 && count > this.config.ipConnectionLimit) {
      // Unlike a moderator kick, this one closes the connection too.
      session.emit('kick', { reason: 'Too many connections from your IP address' });
      socket.disconnect(true);
      return;
    }

    session.emit('rank', -1);
    if (this.announcement) session.emit('announcement', this.announcement);
  }

  onDisconnect(session, reason) {
    this.log.debug(`disconnect ${session.id} (${reason})`);
    // For GET /control/disconnects: how each socket ended, e.g. "client
    // namespace disconnect" when the client sent `41`, "transport close"
    // when it just closed the socket.
    this.disconnects.push({ client: session.id, user: session.name, channel: session.channel ? session.channel.name : null, reason, t: Date.now() });
    if (this.disconnects.length > 10000) this.disconnects.shift();
    if (this.sessions.get(session.id) === session) this.sessions.delete(session.id);
    const count = (this.ipCount.get(session.ip) || 1) - 1;
    if (count > 0) this.ipCount.set(session.ip, count);
    else this.ipCount.delete(session.ip);
    const ch = session.channel;
    session.connected = false;
    session.pending = null;
    if (ch) ch.leave(session);
    session.clearTimers();
  }

  // Sessions matched by the control API: all, or one channel's, optionally
  // only those logged in as `name` or with socket id `client`.
  selectSessions({ channel, name, client } = {}) {
    let list;
    if (channel !== undefined && channel !== null) {
      const ch = this.getChannel(channel, false);
      list = ch ? ch.sessions.slice() : [];
    } else {
      list = [...this.sessions.values()];
    }
    if (name !== undefined && name !== null) {
      const lower = String(name).toLowerCase();
      list = list.filter((s) => s.lowerName === lower);
    }
    if (client !== undefined && client !== null) list = list.filter((s) => s.id === client);
    return list;
  }
}

module.exports = { World };
