'use strict';
// One connected socket: who it is logged in as, its rank, and the channel it
// joined (CyTube's `User`, src/user.js).
const { ChatLimiter, TokenBucket } = require('./ratelimit');

// Ranks the web client draws differently; crossing one re-sends `userlist`
// (mods and admins see extra user meta).
function crossesUserlistBoundary(oldRank, newRank) {
  return (oldRank >= 2) !== (newRank >= 2) || (oldRank >= 255) !== (newRank >= 255);
}

function normaliseIp(address) {
  if (typeof address !== 'string') return '0.0.0.0';
  return address.startsWith('::ffff:') ? address.substring(7) : address;
}

class Session {
  constructor(world, socket) {
    this.world = world;
    this.socket = socket;
    this.id = socket.id;
    this.ip = normaliseIp(socket.handshake && socket.handshake.address);
    this.connectedAt = Date.now();
    this.connected = true;

    this.name = null; // set on login
    this.loggedIn = false;
    this.guest = false;
    this.account = null; // registered account record
    this.loginInProgress = false;
    this.globalRank = -1;
    this.rank = -1; // effective rank, what `rank` events carry

    this.joinAttempted = false; // joinChannel is one-shot per connection
    this.channel = null; // Channel once accepted
    this.pending = null; // { channel, reason: 'password' | 'login' } while held at the door

    this.afk = false;
    this.muted = false;
    this.afkTimer = null;
    this.profile = { image: '', text: '' };
    this.chatLimiter = new ChatLimiter();
    const cfg = world.config;
    this.inBucket = cfg.inRateLimit > 0 ? new TokenBucket(cfg.inBurst || cfg.inRateLimit, cfg.inRateLimit) : null;
  }

  get lowerName() {
    return this.name === null ? null : this.name.toLowerCase();
  }

  emit(event, data) {
    if (!this.connected) return;
    if (data === undefined) this.socket.emit(event);
    else this.socket.emit(event, data);
  }

  // Change the effective rank: tell the client, and re-send the user list when
  // the new rank changes what it may see.
  setRank(rank) {
    const old = this.rank;
    this.rank = rank;
    this.emit('rank', rank);
    if (this.channel && crossesUserlistBoundary(old, rank)) this.channel.sendUserlist(this);
  }

  // Moderator-style kick: `kick {reason}` then Socket.IO DISCONNECT (41). Like
  // CyTube the WebSocket itself stays open; the client is expected to close
  // it. socket.disconnect() fires 'disconnect' synchronously, so by the time
  // this returns the session has left its channel (userLeave sent).
  kick(reason) {
    if (!this.connected) return;
    this.emit('kick', reason === undefined ? {} : { reason });
    this.socket.disconnect();
  }

  // Abrupt loss of the connection: the TCP socket is destroyed without a
  // WebSocket close frame or Socket.IO goodbye.
  drop() {
    if (!this.connected) return;
    const conn = this.socket.conn;
    try {
      const ws = conn && conn.transport && conn.transport.socket;
      if (ws && typeof ws.terminate === 'function') {
        ws.terminate();
        return;
      }
    } catch (e) {
      // fall through to the engine-level close
    }
    try {
      if (this.socket.request && this.socket.request.socket) this.socket.request.socket.destroy();
      if (conn) conn.close(true);
    } catch (e) {
      this.socket.disconnect(true);
    }
  }

  // The engine stops pinging this socket and stops expecting pongs.
  silence() {
    const conn = this.socket.conn;
    if (!conn) return;
    clearTimeout(conn.pingIntervalTimer);
    clearTimeout(conn.pingTimeoutTimer);
    conn.pingIntervalTimer = null; // engine.io refresh()es them; null stops that
    conn.pingTimeoutTimer = null;
    conn.schedulePing = () => {};
    conn.resetPingTimeout = () => {};
    this.silenced = true;
  }

  // One raw WebSocket frame, outside Socket.IO. Returns false when the
  // transport is not a WebSocket.
  sendRaw(frame, binary) {
    const conn = this.socket.conn;
    const ws = conn && conn.transport && conn.transport.socket;
    if (!ws || typeof ws.send !== 'function') return false;
    ws.send(binary ? Buffer.from(frame) : frame, { binary: !!binary });
    return true;
  }

  setAFK(afk) {
    if (this.afk === afk) return;
    this.afk = afk;
    if (this.channel && this.loggedIn) this.channel.sendAFK(this);
  }

  // Restart the auto-AFK clock (channel option afk_timeout, in seconds).
  touchActivity() {
    if (this.afkTimer) clearTimeout(this.afkTimer);
    this.afkTimer = null;
    const ch = this.channel;
    if (!ch || !this.loggedIn) return;
    const seconds = Number(ch.opts.afk_timeout);
    if (!(seconds > 0)) return;
    this.afkTimer = setTimeout(() => {
      this.afkTimer = null;
      if (this.channel === ch && this.connected) this.setAFK(true);
    }, seconds * 1000);
  }

  clearTimers() {
    if (this.afkTimer) clearTimeout(this.afkTimer);
    this.afkTimer = null;
  }

  // For GET /control/users.
  describe() {
    return {
      id: this.id,
      name: this.name,
      rank: this.rank,
      logged_in: this.loggedIn,
      guest: this.guest,
      registered: this.loggedIn && !this.guest,
      afk: this.afk,
      muted: this.muted,
      ip: this.ip,
    };
  }
}

module.exports = { Session, crossesUserlistBoundary, normaliseIp };
