'use strict';
// Chat and PM processing (src/channel/chat.js, drink.js, kickban.js in
// CyTube 3.86), step by step in the order of protocol doc §3 "Chat".
const { formatChatText, LINK_RE } = require('./escape');
const { VALID_USER_NAME } = require('./accounts');
const { FIXED_ANTIFLOOD } = require('./defaults');

const TYPE_CHAT = { msg: 'string', meta: 'object,optional' };
const TYPE_PM = { msg: 'string', to: 'string', meta: 'object,optional' };

function maxLength(world) {
  return world.config.maxChatLength;
}

// The chatMsg/pm object every receiver gets.
function formatMessage(channel, username, msg, meta) {
  return {
    username,
    msg: formatChatText(msg, { filters: channel.filters, convertLinks: !!channel.opts.enable_link_regex }),
    meta,
    time: Date.now(),
  };
}

// New-account chat restrictions (§7.15): below rank 2, an account or
// connection younger than new_user_chat_delay seconds may not chat, and one
// younger than new_user_chat_link_delay may not post links. The age is the
// older of account registration and this connection (we have no ip-session
// cookie). Returns true when the message was refused.
function newUserRefused(session, channel, rawMsg) {
  if (session.rank >= 2) return false;
  const firstSeen = Math.min(session.connectedAt, session.account ? session.account.registeredAt : Infinity);
  const ageSeconds = (Date.now() - firstSeen) / 1000;
  const chatDelay = Number(channel.opts.new_user_chat_delay) || 0;
  const linkDelay = Number(channel.opts.new_user_chat_link_delay) || 0;
  if (chatDelay > 0 && ageSeconds < chatDelay) {
    session.emit('spamFiltered', { reason: 'NEW_USER_CHAT' });
    return true;
  }
  LINK_RE.lastIndex = 0;
  if (linkDelay > 0 && ageSeconds < linkDelay && LINK_RE.test(rawMsg)) {
    session.emit('spamFiltered', { reason: 'NEW_USER_CHAT_LINK' });
    return true;
  }
  return false;
}

// ---- chat commands --------------------------------------------------------
// Each takes (session, rawMsg, meta). A `/word` with an entry here is run
// and not broadcast; unknown `/words` are ordinary chat. Add commands here.

function restOf(msg) {
  const args = msg.split(' ');
  args.shift();
  return args.join(' ');
}

const COMMANDS = {
  me(session, msg, meta) {
    meta.addClass = 'action';
    meta.action = true;
    processChatMsg(session, { msg: restOf(msg), meta });
  },

  sp(session, msg, meta) {
    meta.addClass = 'spoiler';
    processChatMsg(session, { msg: restOf(msg), meta });
  },

  say(session, msg, meta) {
    if (session.rank < 1.5) return;
    meta.addClass = 'shout';
    meta.addClassToNameAndTimestamp = true;
    meta.forceShowName = true;
    processChatMsg(session, { msg: restOf(msg), meta });
  },

  a(session, msg, meta) {
    if (session.globalRank < 255) return;
    meta.superadminflair = { labelclass: 'label-danger', icon: 'glyphicon-globe' };
    meta.forceShowName = true;
    processChatMsg(session, { msg: restOf(msg), meta });
  },

  afk(session) {
    session.setAFK(!session.afk);
  },

  clear(session) {
    const ch = session.channel;
    if (session.rank < ch.permissions.chatclear) return;
    ch.clearChat(session.name);
    ch.broadcast('chatMsg', {
      username: '[server]',
      msg: `${session.name} cleared chat.`,
      meta: { addClass: 'server-whisper', addClassToNameAndTimestamp: true },
      time: Date.now(),
    });
  },

  kick(session, msg) {
    const ch = session.channel;
    if (!(session.rank >= ch.permissions.kick)) return;
    const args = msg.split(' ');
    args.shift();
    const name = args.shift();
    if (!name) {
      session.emit('errorMsg', { msg: "No kick target specified. If you're trying to kick anonymous users, use /kickanons" });
      return;
    }
    const target = ch.findUser(name);
    if (!target) return; // unknown targets are ignored silently
    if (target.rank >= session.rank || target.globalRank > session.globalRank) {
      session.emit('errorMsg', { msg: `You do not have permission to kick ${target.name}` });
      return;
    }
    target.kick(args.join(' '));
    ch.modMessage(`${session.name} kicked ${target.name}`);
  },

  kickanons(session) {
    const ch = session.channel;
    if (!(session.rank >= ch.permissions.kick)) return;
    for (const s of ch.sessions.slice()) if (!s.loggedIn) s.kick('anonymous user');
  },
};
COMMANDS.shout = COMMANDS.say;
COMMANDS.rcv = COMMANDS.say;

// `/d` drink calls (src/channel/drink.js), run before processChatMsg for
// users holding the `drink` permission. Rewrites data in place; returns false
// when the message is to be dropped.
function drinkHook(session, data) {
  const ch = session.channel;
  if (!/^\/d-?[0-9]*/.test(data.msg) || !(session.rank >= ch.permissions.drink)) return true;
  let text = data.msg.substring(2);
  let count = 1;
  const m = /^(-?[0-9]+)/.exec(text);
  if (m) {
    count = parseInt(m[1], 10);
    if (Number.isNaN(count) || count < -10000 || count > 10000) return false;
    text = text.replace(m[1], '').trim();
    if (text || count > 0) {
      text += ' drink!';
      if (count !== 1) text += `  (x${count})`;
    }
  } else {
    text = `${text.trim()} drink!`;
  }
  ch.drinkCount += count;
  ch.broadcast('drinkCount', ch.drinkCount);
  data.msg = text;
  data.meta.addClass = 'drink';
  data.meta.forceShowName = true;
  return true;
}

// `chatMsg` from a client that is in a channel (already typechecked).
function handleChatMsg(session, data) {
  const ch = session.channel;
  if (!(session.rank >= ch.permissions.chat)) return; // anonymous (-1) never passes
  let msg = data.msg.substring(0, maxLength(session.world));
  if (newUserRefused(session, ch, msg)) return;
  if (!ch.opts.allow_ascii_control) msg = msg.replace(/[\x00-\x1f]+/g, ' ');
  if (!msg.trim()) return;
  if (!session.loggedIn) return;

  // meta is rebuilt from scratch: only a truthful modflair survives.
  const meta = {};
  if (session.rank >= 2 && data.meta && data.meta.modflair === session.rank) meta.modflair = session.rank;

  const d = { msg, meta };
  if (!drinkHook(session, d)) return;
  session.touchActivity();
  processChatMsg(session, d);
}

// Second half of chat handling; commands like /me re-enter here, so they pay
// the flood limiter twice, as on the real server.
function processChatMsg(session, data) {
  const ch = session.channel;
  if (!ch || !session.connected) return;
  if (data.msg.indexOf('/afk') === -1) session.setAFK(false);

  const msgobj = formatMessage(ch, session.name, data.msg, data.meta);
  const flood = ch.opts.chat_antiflood && session.rank < 2 ? ch.opts.chat_antiflood_params : FIXED_ANTIFLOOD;
  if (session.chatLimiter.throttle(flood)) {
    session.emit('cooldown', 1000 / flood.sustained);
    return;
  }

  if (data.msg.indexOf('>') === 0) msgobj.meta.addClass = 'greentext';

  if (data.msg.indexOf('/') === 0) {
    const space = data.msg.indexOf(' ');
    const cmd = space < 0 ? data.msg.substring(1) : data.msg.substring(1, space);
    if (Object.prototype.hasOwnProperty.call(COMMANDS, cmd)) {
      COMMANDS[cmd](session, data.msg, data.meta);
      return;
    }
  }

  if (session.muted) {
    session.emit('noflood', { action: 'chat', msg: 'You have been muted on this channel.' });
    return;
  }
  ch.sendMessage(msgobj);
}

// `pm` from a client that is in a channel (already typechecked).
function handlePm(session, data) {
  const ch = session.channel;
  if (!session.loggedIn) {
    session.emit('errorMsg', { msg: 'You must be signed in to send PMs' });
    return;
  }
  if (newUserRefused(session, ch, data.msg)) return;
  const to = data.to.toLowerCase();
  if (to === session.lowerName) {
    session.emit('errorMsg', { msg: "You can't PM yourself!" });
    return;
  }
  if (!VALID_USER_NAME.test(to)) {
    session.emit('errorMsg', { msg: `PM failed: ${to} isn't a valid username.` });
    return;
  }
  if (session.chatLimiter.throttle(FIXED_ANTIFLOOD)) {
    session.emit('cooldown', 1000 / FIXED_ANTIFLOOD.sustained);
    return;
  }
  const msg = data.msg.substring(0, maxLength(session.world));
  const target = ch.findUser(to);
  if (!target) {
    session.emit('errorMsg', { msg: `PM failed: ${to} isn't connected to this channel.` });
    return;
  }
  const meta = {};
  if (msg.indexOf('>') === 0) meta.addClass = 'greentext';
  const msgobj = formatMessage(ch, session.name, msg, meta);
  msgobj.to = target.name;
  target.emit('pm', msgobj);
  session.emit('pm', msgobj);
}

// Control API: a chat line "from" anyone, present or not. It goes through the
// same formatting (and /me, /sp, greentext) but no permission or flood checks.
// With raw=true the text is sent unescaped, like CyTube's own [server] lines.
function injectChat(channel, { username, msg, meta = {}, raw = false }) {
  let text = String(msg).substring(0, channel.world.config.maxChatLength);
  if (!channel.opts.allow_ascii_control) text = text.replace(/[\x00-\x1f]+/g, ' ');
  const m = { ...meta };
  if (!raw) {
    if (/^\/me( |$)/.test(text)) {
      m.addClass = 'action';
      m.action = true;
      text = restOf(text);
    } else if (/^\/sp( |$)/.test(text)) {
      m.addClass = 'spoiler';
      text = restOf(text);
    }
    if (text.indexOf('>') === 0) m.addClass = 'greentext';
  }
  const msgobj = raw
    ? { username, msg: text, meta: m, time: Date.now() }
    : formatMessage(channel, username, text, m);
  channel.sendMessage(msgobj);
  return msgobj;
}

module.exports = { TYPE_CHAT, TYPE_PM, COMMANDS, handleChatMsg, handlePm, processChatMsg, injectChat, formatMessage };
