'use strict';
// `login` (src/user.js User.prototype.login / guestLogin), with the reply
// texts of protocol doc §4.
const { VALID_USER_NAME, isReserved } = require('./accounts');

const GUEST_ERRORS = {
  delay: 'Guest logins are restricted to one per IP address per 60 seconds.',
  invalid: 'Invalid username.  Usernames must be 1-20 characters long and consist only of characters a-z, A-Z, 0-9, -, or _.',
  reserved: 'That username is reserved.',
  registered: 'That username is registered.',
  inUse: 'That name is already in use on this channel.',
};

function fail(session, error) {
  session.emit('login', { success: false, error });
}

function handleLogin(session, data) {
  if (typeof data !== 'object' || data === null) {
    session.emit('errorMsg', { msg: 'Invalid login frame' });
    return;
  }
  if (typeof data.name !== 'string') return;
  // No logout or rename; a second login while one is in flight gets no reply.
  if (session.loggedIn || session.loginInProgress) return;

  const guest = typeof data.pw !== 'string' || data.pw === '';
  const name = data.name;
  const pw = data.pw;
  session.loginInProgress = true;
  const run = () => {
    session.loginInProgress = false;
    if (!session.connected || session.loggedIn) return;
    if (guest) guestLogin(session, name);
    else registeredLogin(session, name, pw);
  };
  // --login-delay stands in for the real server's bcrypt/database time.
  const delay = session.world.config.loginDelay;
  if (delay > 0) setTimeout(run, delay);
  else run();
}

function guestLogin(session, name) {
  const world = session.world;
  const now = Date.now();
  const delay = world.config.guestLoginDelay;
  const last = world.guestLogins.get(session.ip);
  if (delay > 0 && last !== undefined && now - last < delay) return fail(session, GUEST_ERRORS.delay);
  if (!VALID_USER_NAME.test(name)) return fail(session, GUEST_ERRORS.invalid);
  if (isReserved(name)) return fail(session, GUEST_ERRORS.reserved);
  if (world.accounts.isRegistered(name)) return fail(session, GUEST_ERRORS.registered);
  // Only checked when already in a channel; a guest that logs in first and
  // then joins kicks a same-named ghost instead ("Duplicate login").
  if (session.channel && session.channel.findUser(name, session)) return fail(session, GUEST_ERRORS.inUse);

  world.guestLogins.set(session.ip, now);
  session.name = name;
  session.guest = true;
  session.loggedIn = true;
  session.globalRank = 0;
  world.recordAlias(session.ip, name);
  session.setRank(0);
  session.emit('login', { success: true, name, guest: true });
  afterLogin(session);
}

function registeredLogin(session, name, pw) {
  const world = session.world;
  const password = pw.substring(0, 100);
  if (!VALID_USER_NAME.test(name)) return fail(session, `Invalid username "${name}"`);
  const account = world.accounts.find(name);
  if (!account) return fail(session, 'User does not exist');
  if (account.password !== password) return fail(session, 'Invalid username/password combination');

  session.name = account.name; // canonical casing
  session.guest = false;
  session.loggedIn = true;
  session.account = account;
  session.globalRank = account.rank;
  session.profile = { ...account.profile };
  world.recordAlias(session.ip, account.name);
  session.setRank(account.rank);
  session.emit('login', { success: true, name: account.name });
  afterLogin(session);
}

function afterLogin(session) {
  if (session.pending && session.pending.reason === 'login') {
    // Held at the door by block_anonymous_users: now it may enter.
    const ch = session.pending.channel;
    if (!ch.closed) ch.accept(session);
    return;
  }
  if (session.channel) session.channel.onLogin(session);
}

module.exports = { handleLogin, GUEST_ERRORS };
