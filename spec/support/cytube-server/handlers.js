'use strict';
// Client -> server events: one table entry per event.
//
//   scope 'session'  handled from connect on (CyTube attaches these in User)
//   scope 'pending'  only while held at the channel door (password)
//   scope 'channel'  only once accepted into a channel; before that the event
//                    is dropped silently, as on the real server
//   type             json-typecheck template; a mismatch answers errorMsg
//                    "Unexpected error for message <event>: <reason>"
//   fn(session, data, ack)
//
// Events without an entry are ignored (but still recorded for the control
// API). To support a new event, add an entry.
const typecheck = require('./typecheck');
const chat = require('./chat');
const { handleLogin } = require('./login');

const VALID_CHANNEL_NAME = /^[\w-]{1,30}$/;

function handleJoinChannel(session, data) {
  // Registered with once() in CyTube: even a malformed first attempt uses it up.
  if (session.joinAttempted) return;
  session.joinAttempted = true;
  if (typeof data !== 'object' || data === null || typeof data.name !== 'string') return;
  if (!VALID_CHANNEL_NAME.test(data.name)) {
    session.emit('errorMsg', {
      msg: 'Invalid channel name. Channel names may consist of 1-30 characters in the set a-z, A-Z, 0-9, -, and _',
    });
    session.kick('Invalid channel name');
    return;
  }
  const channel = session.world.getChannel(data.name.toLowerCase(), true);
  session.world.recorder.tagClient(session.id, channel.name);

  // Door checks, in CyTube's order: (ban: not modelled), password, anonymous.
  const pw = channel.opts.password;
  if (typeof pw === 'string' && pw !== '' && !(session.loggedIn && session.rank >= 2) && data.pw !== pw) {
    session.pending = { channel, reason: 'password' };
    session.emit('needPassword', typeof data.pw !== 'undefined');
    return;
  }
  admitPastPassword(session, channel);
}

function admitPastPassword(session, channel) {
  if (channel.opts.block_anonymous_users && !session.loggedIn) {
    session.pending = { channel, reason: 'login' };
    session.emit('errorMsg', { msg: 'This channel has blocked anonymous users. Please provide a user name to join.' });
    return;
  }
  channel.accept(session);
}

function handleChannelPassword(session, pw) {
  if (!session.pending || session.pending.reason !== 'password' || typeof pw !== 'string') return;
  const channel = session.pending.channel;
  if (pw !== channel.opts.password) {
    session.emit('needPassword', true);
    return;
  }
  session.emit('cancelNeedPassword');
  admitPastPassword(session, channel);
}

// Rank-gated configuration events: an under-ranked sender is kicked, not
// answered (protocol doc §7.8).
function gated(minRank, fn) {
  return (session, data) => {
    const need = typeof minRank === 'function' ? minRank(session.channel) : minRank;
    if (!(session.rank >= need)) {
      session.kick(`Attempted ${fn.eventName} without sufficient permission`);
      return;
    }
    fn(session, data);
  };
}

function named(eventName, fn) {
  fn.eventName = eventName;
  return fn;
}

// Playlist (src/channel/playlist.js), without media lookups: a `cu` id must
// be an <iframe> (the real server's answer otherwise); anything else is
// queued as is, with the id as its title and no duration.
const TYPE_QUEUE = { id: 'string', type: 'string', pos: 'string', title: 'string,optional', duration: 'number,optional', temp: 'boolean,optional' };

function playlistPerm(s, locked, open) {
  const ch = s.channel;
  return s.rank >= ch.permissions[ch.playlistLocked ? locked : open];
}

function handleQueue(s, data) {
  const ch = s.channel;
  const next = data.pos === 'next';
  if (!playlistPerm(s, next ? 'playlistnext' : 'playlistadd', next ? 'oplaylistnext' : 'oplaylistadd')) {
    s.emit('queueFail', { msg: 'You don\'t have permission to add videos', link: '', id: data.id });
    return;
  }
  if (data.type === 'cu' && !/^<iframe/i.test(data.id)) {
    s.emit('queueFail', { msg: 'Invalid embed.  Input must be an &lt;iframe&gt; tag', link: '', id: data.id });
    return;
  }
  const item = {
    media: { id: data.id, title: data.title || data.id, seconds: 0, duration: '00:00', type: data.type, meta: {} },
    uid: ch.nextUid++,
    temp: !(s.rank >= ch.permissions.addnontemp) || data.temp === true,
    queueby: s.name || '',
  };
  let after = 'prepend';
  if (next || ch.playlist.length === 0) {
    ch.playlist.unshift(item);
  } else {
    after = ch.playlist[ch.playlist.length - 1].uid;
    ch.playlist.push(item);
  }
  ch.broadcast('queue', { item, after });
  ch.broadcast('setPlaylistMeta', ch.playlistMeta());
}

function handleDelete(s, uid) {
  const ch = s.channel;
  if (typeof uid !== 'number' || !playlistPerm(s, 'playlistdelete', 'oplaylistdelete')) return;
  const i = ch.playlist.findIndex((it) => it.uid === uid);
  if (i < 0) return;
  ch.playlist.splice(i, 1);
  ch.broadcast('delete', { uid });
  ch.broadcast('setPlaylistMeta', ch.playlistMeta());
}

// Polls (src/channel/poll.js): answered through the ack when there is one.
const TYPE_POLL = { title: 'string', opts: 'array', obscured: 'boolean', timeout: 'number,optional' };

function handleNewPoll(s, data, ack) {
  const ch = s.channel;
  const fail = (message) => (ack ? ack({ error: { message } }) : s.emit('errorMsg', { msg: message }));
  if (!(s.rank >= ch.permissions.pollctl)) return;
  if (data.title.length > 255) return fail('Poll title cannot exceed 255 characters.');
  if (data.opts.length === 0 || data.opts.length > 50) return fail('Polls must have 1-50 options.');
  ch.poll = { title: data.title, options: data.opts.map(String), counts: data.opts.map(() => 0), initiator: s.name || '', timestamp: Date.now() };
  ch.broadcast('newPoll', ch.poll);
  if (ack) ack({});
}

function handleClosePoll(s) {
  const ch = s.channel;
  if (!(s.rank >= ch.permissions.pollctl) || !ch.poll) return;
  ch.poll = null;
  ch.broadcast('closePoll');
}

function handleVoteskip(s) {
  const ch = s.channel;
  if (!ch.opts.allow_voteskip || !(s.rank >= ch.permissions.voteskip)) return;
  ch.voteskips = (ch.voteskips || 0) + 1;
  const need = Math.max(1, Math.ceil(ch.sessions.length * ch.opts.voteskip_ratio));
  for (const r of ch.sessions) if (r.rank >= ch.permissions.viewvoteskip) r.emit('voteskip', { count: ch.voteskips, need });
}

const HANDLERS = {
  queue: { scope: 'channel', type: TYPE_QUEUE, fn: handleQueue },
  delete: { scope: 'channel', fn: handleDelete },
  newPoll: { scope: 'channel', type: TYPE_POLL, fn: handleNewPoll },
  closePoll: { scope: 'channel', fn: handleClosePoll },
  voteskip: { scope: 'channel', fn: handleVoteskip },
  joinChannel: { scope: 'session', fn: handleJoinChannel },
  login: { scope: 'session', fn: handleLogin },
  channelPassword: { scope: 'pending', fn: handleChannelPassword },

  chatMsg: { scope: 'channel', type: chat.TYPE_CHAT, fn: chat.handleChatMsg },
  pm: { scope: 'channel', type: chat.TYPE_PM, fn: chat.handlePm },

  setOptions: {
    scope: 'channel',
    fn: gated(2, named('setOptions', (s, data) => {
      if (typeof data === 'object' && data !== null) s.channel.setOptions(data);
    })),
  },
  setPermissions: {
    scope: 'channel',
    fn: gated(3, named('setPermissions', (s, data) => {
      if (typeof data === 'object' && data !== null) s.channel.setPermissions(data);
    })),
  },
  setMotd: {
    scope: 'channel',
    fn: gated((ch) => ch.permissions.motdedit, named('setMotd', (s, data) => {
      if (data && typeof data.motd === 'string') s.channel.setMotd(data.motd.substring(0, 20000));
    })),
  },
  assignLeader: {
    scope: 'channel',
    fn: gated((ch) => ch.permissions.leaderctl, named('assignLeader', (s, data) => {
      // Leaders are not modelled; an empty name (server takes over) is echoed.
      if (data && data.name === '') s.channel.broadcast('setLeader', '');
      else if (data && typeof data.name === 'string') {
        s.emit('errorMsg', { msg: `Unable to assign leader: could not find user ${data.name}` });
      }
    })),
  },
  readChanLog: {
    scope: 'channel',
    fn: gated(3, named('readChanLog', (s) => s.emit('readChanLog', { success: true, data: '' }))),
  },
  playerReady: { scope: 'channel', fn: () => {} }, // nothing ever plays here
};

// Entry point for every event a client sends.
function dispatch(session, event, args) {
  const world = session.world;
  const data = args.length > 0 && typeof args[0] !== 'function' ? args[0] : undefined;
  const ack = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;

  let channelName = session.channel ? session.channel.name
    : session.pending ? session.pending.channel.name : null;
  if (event === 'joinChannel' && channelName === null && !session.joinAttempted &&
      data && typeof data.name === 'string' && VALID_CHANNEL_NAME.test(data.name)) {
    channelName = data.name.toLowerCase();
  }
  world.recorder.record(session.id, session.name, channelName, event, data);

  // io.throttle.in-rate-limit: every incoming event counts, even unknown ones.
  if (session.inBucket && session.inBucket.throttle()) {
    session.kick('Rate limit exceeded');
    return;
  }

  // Own properties only: an event named "constructor" or "__proto__" must not
  // reach Object.prototype.
  if (typeof event !== 'string' || !Object.prototype.hasOwnProperty.call(HANDLERS, event)) return;
  const handler = HANDLERS[event];
  if (handler.scope === 'channel' && !session.channel) return;
  if (handler.scope === 'pending' && !session.pending) return;
  if (handler.type) {
    const problem = typecheck.check(data, handler.type);
    if (problem !== null) {
      session.emit('errorMsg', { msg: `Unexpected error for message ${event}: ${problem}` });
      return;
    }
  }
  handler.fn(session, data, ack);
}

module.exports = { HANDLERS, dispatch, VALID_CHANNEL_NAME };
