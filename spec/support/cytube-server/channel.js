'use strict';
// One channel ("room"): its state and everything sent to its members
// (CyTube's Channel plus the state parts of its modules). Chat processing
// lives in chat.js; this module owns who is in the room and what they get.
const crypto = require('crypto');
const defaults = require('./defaults');
const { compileFilters, DEFAULT_FILTERS } = require('./escape');

let roomSerial = 0;

function md5Base64(s) {
  return crypto.createHash('md5').update(s, 'utf8').digest('base64');
}

class Channel {
  constructor(world, name) {
    this.world = world;
    this.name = name;
    // A unique Socket.IO room per Channel object: after /control/reset a new
    // channel with the same name must not receive the old one's broadcasts.
    this.room = `channel:${name}:${++roomSerial}`;
    this.closed = false;

    this.registered = true;
    this.permissions = { ...defaults.PERMISSIONS };
    this.opts = defaults.channelOpts(name);
    this.motd = '';
    this.css = '';
    this.js = '';
    this.emotes = [];
    this.playlistLocked = true;
    this.drinkCount = 0;
    this.filters = compileFilters(DEFAULT_FILTERS);
    this.buffer = []; // last CHAT_BUFFER_SIZE chatMsg objects, replayed on join
    this.playlist = []; // items {media, uid, temp, queueby}; no media is ever looked up
    this.nextUid = 1;
    this.ranks = new Map(); // lower name -> channel rank set through the control API

    this.sessions = []; // accepted sessions, in join order
    this.usercountTimer = null;
    this.usercountPending = false;
  }

  close() {
    this.closed = true;
    if (this.usercountTimer) clearTimeout(this.usercountTimer);
    this.usercountTimer = null;
  }

  // ---- sending -------------------------------------------------------------

  broadcast(event, data) {
    if (this.closed) return;
    if (data === undefined) this.world.io.to(this.room).emit(event);
    else this.world.io.to(this.room).emit(event, data);
  }

  // Logged-in member named `name` (case-insensitive), optionally not `except`.
  findUser(name, except) {
    const lower = String(name).toLowerCase();
    return this.sessions.find((s) => s !== except && s.loggedIn && s.lowerName === lower) || null;
  }

  aliasesOf(session) {
    return this.world.aliasesFor(session.ip);
  }

  // A userlist / addUser entry for `s` as seen by a receiver; moderators
  // (rank >= 2) also get smuted, aliases and a cloaked IP.
  userInfo(s, forModerator) {
    const meta = { afk: s.afk, muted: s.muted };
    if (forModerator) {
      meta.smuted = false;
      meta.aliases = this.aliasesOf(s);
      meta.ip = this.world.cloakIp(s.ip);
    }
    return { name: s.name, rank: s.rank, profile: { image: s.profile.image, text: s.profile.text }, meta };
  }

  sendUserlist(receiver) {
    const mod = receiver.rank >= 2;
    receiver.emit('userlist', this.sessions.filter((s) => s.loggedIn).map((s) => this.userInfo(s, mod)));
  }

  // `addUser` for `s` to every member (its own copy too unless exceptSelf).
  sendAddUser(s, exceptSelf) {
    for (const r of this.sessions) {
      if (exceptSelf && r === s) continue;
      r.emit('addUser', this.userInfo(s, r.rank >= 2));
    }
  }

  sendUserMeta(s) {
    for (const r of this.sessions) {
      r.emit('setUserMeta', { name: s.name, meta: this.userInfo(s, r.rank >= 2).meta });
    }
  }

  sendAFK(s) {
    this.broadcast('setAFK', { name: s.name, afk: s.afk });
    this.sendUserMeta(s);
  }

  // "[server]" notice to members with rank >= minRank; not kept in the buffer.
  modMessage(text, minRank = 2) {
    const msgobj = {
      username: '[server]',
      msg: text,
      meta: { addClass: 'server-whisper', addClassToNameAndTimestamp: true },
      time: Date.now(),
    };
    for (const r of this.sessions) if (r.rank >= minRank) r.emit('chatMsg', msgobj);
  }

  // Broadcast a chat message to the room and keep it for replay.
  sendMessage(msgobj) {
    this.broadcast('chatMsg', msgobj);
    this.buffer.push(msgobj);
    while (this.buffer.length > defaults.CHAT_BUFFER_SIZE) this.buffer.shift();
  }

  // `usercount` is throttled like lodash throttle (leading and trailing
  // edge): at most one per interval, and a change inside the window is sent
  // when it ends. The interval is --usercount-throttle (CyTube: 10 s).
  scheduleUsercount() {
    if (this.closed) return;
    const interval = this.world.config.usercountThrottle;
    if (!(interval > 0)) {
      this.broadcast('usercount', this.sessions.length);
      return;
    }
    if (this.usercountTimer) {
      this.usercountPending = true;
      return;
    }
    this.broadcast('usercount', this.sessions.length);
    this.usercountTimer = setTimeout(() => this.usercountWindowEnded(interval), interval);
  }

  usercountWindowEnded(interval) {
    this.usercountTimer = null;
    if (this.closed || !this.usercountPending) return;
    this.usercountPending = false;
    this.broadcast('usercount', this.sessions.length);
    this.usercountTimer = setTimeout(() => this.usercountWindowEnded(interval), interval);
  }

  // ---- membership ----------------------------------------------------------

  // Admit a session that passed the door checks (ban, password, anonymous
  // block): Channel.acceptUser plus every module's onUserPostJoin, in the
  // order the captures show.
  accept(s) {
    s.pending = null;
    s.channel = this;
    this.sessions.push(s);
    s.socket.join(this.room);

    if (s.loggedIn) {
      this.kickDuplicates(s);
      this.sendAddUser(s, true);
      this.modMessage(`${s.name} joined (aliases: ${this.aliasesOf(s).join(',')})`);
    }

    s.emit('setPermissions', this.permissions);
    s.emit('setPlaylistLocked', this.playlistLocked);
    s.emit('emoteList', this.emotes);
    for (const msgobj of this.buffer) s.emit('chatMsg', msgobj);
    s.emit('drinkCount', this.drinkCount);
    s.emit('channelCSSJS', { css: this.css, cssHash: md5Base64(this.css), js: this.js, jsHash: md5Base64(this.js) });
    s.emit('setMotd', this.motd);
    s.emit('channelOpts', this.opts);
    this.sendPlaylist(s);
    this.sendUserlist(s);
    this.scheduleUsercount();
    if (!this.registered) s.emit('channelNotRegistered');

    s.touchActivity();
    if (s.loggedIn) this.resolveChannelRank(s);
  }

  sendPlaylist(s) {
    s.emit('setPlaylistMeta', this.playlistMeta());
    s.emit('playlist', this.playlist);
  }

  playlistMeta() {
    const raw = this.playlist.reduce((n, it) => n + (it.media.seconds || 0), 0);
    const mm = String(Math.floor(raw / 60)).padStart(2, '0');
    const ss = String(raw % 60).padStart(2, '0');
    return { count: this.playlist.length, rawTime: raw, time: `${mm}:${ss}` };
  }

  // A logged-in session arrived (by join or login): older sessions in this
  // channel with the same name are kicked.
  kickDuplicates(s) {
    for (const other of this.sessions.slice()) {
      if (other !== s && other.loggedIn && other.lowerName === s.lowerName) other.kick('Duplicate login');
    }
  }

  // Called when a member logs in while already in the channel.
  onLogin(s) {
    this.kickDuplicates(s);
    this.sendAddUser(s, false);
    this.modMessage(`${s.name} joined (aliases: ${this.aliasesOf(s).join(',')})`);
    s.touchActivity();
    this.resolveChannelRank(s);
  }

  // Channel rank for a logged-in member: a rank set through the control API,
  // else the account's stored rank for this channel (1 when none). Guests
  // only get one through the control API.
  channelRankFor(s) {
    if (this.ranks.has(s.lowerName)) return this.ranks.get(s.lowerName);
    if (s.guest || !s.account) return null;
    const stored = this.world.accounts.channelRank(s.account, this.name);
    return stored === null ? 1 : stored;
  }

  effectiveRankFor(s) {
    const cr = this.channelRankFor(s);
    if (cr === null) return s.globalRank;
    return s.guest ? cr : Math.max(s.globalRank, cr);
  }

  // CyTube fetches the channel rank from the database after the join or
  // login burst; the client then gets `rank`, a playlist re-send, and the room
  // a `setUserRank`. Done on the next turn of the loop to stay asynchronous.
  resolveChannelRank(s) {
    if (s.guest && !this.ranks.has(s.lowerName)) return;
    setImmediate(() => {
      if (s.channel !== this || !s.connected || this.closed) return;
      this.applyRank(s, this.effectiveRankFor(s));
    });
  }

  applyRank(s, rank) {
    s.setRank(rank);
    this.sendPlaylist(s);
    this.broadcast('setUserRank', { name: s.name, rank });
  }

  // Control API: set a member's channel rank now and for later joins.
  setChannelRank(name, rank) {
    this.ranks.set(String(name).toLowerCase(), rank);
    const s = this.findUser(name);
    if (s) this.applyRank(s, this.effectiveRankFor(s));
    return s !== null;
  }

  leave(s) {
    const i = this.sessions.indexOf(s);
    if (i < 0) return;
    this.sessions.splice(i, 1);
    if (s.connected) s.socket.leave(this.room);
    s.channel = null;
    s.clearTimers();
    if (this.closed) return;
    if (s.loggedIn) this.broadcast('userLeave', { name: s.name });
    this.scheduleUsercount();
  }

  // ---- state changes (control API and rank-gated client events) ------------

  setOptions(changes) {
    for (const [k, v] of Object.entries(changes)) {
      if (k === 'chat_antiflood_params' && v && typeof v === 'object') {
        // setOptions caps and derives cooldown like CyTube.
        const burst = Math.min(20, Math.max(0, Number(v.burst) || 0));
        const sustained = Math.min(10, Math.max(0, Number(v.sustained) || 0));
        this.opts.chat_antiflood_params = { burst, sustained, cooldown: sustained > 0 ? burst / sustained : 0 };
      } else if (Object.prototype.hasOwnProperty.call(this.opts, k)) {
        this.opts[k] = v;
      }
    }
    this.broadcast('channelOpts', this.opts);
  }

  setPermissions(changes) {
    for (const [k, v] of Object.entries(changes)) {
      if (typeof v === 'number' && Number.isFinite(v)) this.permissions[k] = v;
    }
    this.broadcast('setPermissions', this.permissions);
  }

  setMotd(motd) {
    this.motd = String(motd);
    this.broadcast('setMotd', this.motd);
  }

  clearChat(byName) {
    this.buffer = [];
    this.broadcast('clearchat', { clearedBy: byName });
  }

  describe() {
    return {
      name: this.name,
      registered: this.registered,
      opts: this.opts,
      permissions: this.permissions,
      motd: this.motd,
      drinkCount: this.drinkCount,
      usercount: this.sessions.length,
      buffer: this.buffer,
      filters: this.filters.map((f) => ({ name: f.name, source: f.source, flags: f.flags, replace: f.replace, active: f.active, filterlinks: f.filterlinks })),
      ranks: Object.fromEntries(this.ranks),
    };
  }
}

module.exports = { Channel };
