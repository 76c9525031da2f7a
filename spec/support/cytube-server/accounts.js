'use strict';
// Registered accounts (from a JSON fixture) and CyTube's user-name rules.
const fs = require('fs');

// src/utilities.js isValidUserName.
const VALID_USER_NAME = /^[\w-]{1,20}$/;

// Default `reserved-names.usernames` of config.template.yaml: "admin",
// "administrator" or "owner" as a -/_ delimited word. Guests only.
const RESERVED_NAMES = [
  /^(.*?[-_])?admin(istrator)?([-_].*)?$/i,
  /^(.*?[-_])?owner([-_].*)?$/i,
];

// Look-alike folding of the accounts table's name_dedupe column
// (src/database/accounts.js): I/l/1 -> 1, o/0 -> 0, - -> _.
function dedupe(name) {
  return name.toLowerCase().replace(/[il1]/g, '1').replace(/[o0]/g, '0').replace(/-/g, '_');
}

function isReserved(name) {
  return RESERVED_NAMES.some((re) => re.test(name));
}

function normaliseAccount(a) {
  if (!a || typeof a.name !== 'string' || typeof a.password !== 'string') {
    throw new Error(`invalid account entry: ${JSON.stringify(a)}`);
  }
  const channels = {};
  if (a.channels && typeof a.channels === 'object') {
    for (const [ch, rank] of Object.entries(a.channels)) {
      if (typeof rank === 'number') channels[ch.toLowerCase()] = rank;
    }
  }
  return {
    name: a.name,
    password: a.password,
    rank: typeof a.rank === 'number' ? a.rank : 1,
    channels,
    profile: {
      image: (a.profile && typeof a.profile.image === 'string') ? a.profile.image : '',
      text: (a.profile && typeof a.profile.text === 'string') ? a.profile.text : '',
    },
    // Registration time (ms epoch); old by default so new-user chat delays
    // never apply unless a fixture asks for it.
    registeredAt: typeof a.registered_at === 'number' ? a.registered_at : 0,
  };
}

class Accounts {
  constructor() {
    this.byLower = new Map();
  }

  static fromFile(path) {
    const accounts = new Accounts();
    const parsed = JSON.parse(fs.readFileSync(path, 'utf8'));
    const list = Array.isArray(parsed) ? parsed : parsed.accounts;
    if (!Array.isArray(list)) throw new Error(`${path}: expected {"accounts": [...]}`);
    for (const a of list) accounts.put(a);
    return accounts;
  }

  put(raw) {
    const a = normaliseAccount(raw);
    this.byLower.set(a.name.toLowerCase(), a);
    return a;
  }

  find(name) {
    return this.byLower.get(String(name).toLowerCase()) || null;
  }

  // Is `name`, or a look-alike of it, a registered account? (guest check)
  isRegistered(name) {
    const d = dedupe(name);
    for (const a of this.byLower.values()) {
      if (dedupe(a.name) === d) return true;
    }
    return false;
  }

  // Stored channel rank; null when the account has no row for the channel.
  channelRank(account, channel) {
    if (Object.prototype.hasOwnProperty.call(account.channels, channel)) return account.channels[channel];
    if (Object.prototype.hasOwnProperty.call(account.channels, '*')) return account.channels['*'];
    return null;
  }

  list() {
    return [...this.byLower.values()].map((a) => ({ name: a.name, rank: a.rank, channels: a.channels }));
  }
}

module.exports = { Accounts, VALID_USER_NAME, isReserved, dedupe };
