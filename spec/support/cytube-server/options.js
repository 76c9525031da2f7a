'use strict';
// Command-line options. Defaults follow CyTube 3.86 where that does not get
// in the way of tests; the per-IP limits the real server applies are off
// unless asked for (every test client comes from 127.0.0.1).
const path = require('path');

// flag -> [config key, kind, default, help]
const FLAGS = {
  '--port': ['port', 'int', 0, 'TCP port on 127.0.0.1; 0 picks a free one'],
  '--host': ['host', 'string', '127.0.0.1', 'address to listen on (keep it loopback)'],
  '--ping-interval': ['pingInterval', 'int', 25000, 'Engine.IO ping interval, ms (CyTube: 25000)'],
  '--ping-timeout': ['pingTimeout', 'int', 120000, 'Engine.IO ping timeout, ms (CyTube: 120000)'],
  '--connect-timeout': ['connectTimeout', 'int', 45000, 'close a connection that joins no namespace within this, ms'],
  '--accounts': ['accounts', 'string', path.join(__dirname, 'accounts.json'), 'registered accounts fixture (JSON)'],
  '--max-chat-length': ['maxChatLength', 'int', 320, 'chat/pm cut length in UTF-16 units (CyTube: 320)'],
  '--usercount-throttle': ['usercountThrottle', 'int', 10000, 'usercount throttle window, ms; 0 sends every change (CyTube: 10000)'],
  '--guest-login-delay': ['guestLoginDelay', 'int', 0, 'min ms between successful guest logins per IP; 0 = off (CyTube: 60000)'],
  '--login-delay': ['loginDelay', 'int', 0, 'ms before a login is answered (stands in for bcrypt/DB time)'],
  '--conn-burst': ['connBurst', 'int', 0, 'connection attempts per IP in a burst; 0 = unlimited (CyTube: 5)'],
  '--conn-rate': ['connRate', 'float', 0.1, 'connection attempts per IP refilled per second (CyTube: 0.1)'],
  '--ip-connection-limit': ['ipConnectionLimit', 'int', 0, 'concurrent sockets per IP; 0 = unlimited (CyTube: 10)'],
  '--in-rate-limit': ['inRateLimit', 'float', 0, 'incoming events per second per socket; 0 = unlimited (CyTube default)'],
  '--in-burst': ['inBurst', 'int', 0, 'bucket capacity for --in-rate-limit (default: the rate)'],
  '--log-limit': ['logLimit', 'int', 100000, 'entries kept in the received-event log'],
  '--verbose': ['verbose', 'bool', false, 'log connections and control calls to stderr'],
  '--tls-cert': ['tlsCert', 'string', '', 'PEM certificate: serve HTTPS/WSS (discovery then says secure)'],
  '--tls-key': ['tlsKey', 'string', '', 'PEM private key for --tls-cert'],
  '--public-host': ['publicHost', 'string', '127.0.0.1', 'host name discovery hands out (certificate tests)'],
};

function usage() {
  const lines = ['usage: node server.js [options]', ''];
  for (const [flag, [, kind, def, help]] of Object.entries(FLAGS)) {
    const arg = kind === 'bool' ? '' : ` <${kind}>`;
    lines.push(`  ${(flag + arg).padEnd(28)} ${help} [${def}]`);
  }
  return lines.join('\n');
}

function parse(argv) {
  const config = {};
  for (const [key, , def] of Object.values(FLAGS)) config[key] = def;
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i];
    let value;
    const eq = flag.indexOf('=');
    if (flag.startsWith('--') && eq > 0) {
      value = flag.substring(eq + 1);
      flag = flag.substring(0, eq);
    }
    if (flag === '--help' || flag === '-h') return { help: true };
    const spec = FLAGS[flag];
    if (!spec) throw new Error(`unknown option ${flag}`);
    const [key, kind] = spec;
    if (kind === 'bool') {
      config[key] = value === undefined ? true : !/^(0|false|no)$/i.test(value);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`option ${flag} needs a value`);
      value = argv[++i];
    }
    if (kind === 'int' || kind === 'float') {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0 || (kind === 'int' && !Number.isInteger(n))) {
        throw new Error(`option ${flag}: bad value ${JSON.stringify(value)}`);
      }
      config[key] = n;
    } else {
      config[key] = value;
    }
  }
  return { config };
}

// Keys POST /control/config may change at run time (snake_case or camelCase).
const RUNTIME_KEYS = [
  'maxChatLength', 'usercountThrottle', 'guestLoginDelay', 'loginDelay',
  'connBurst', 'connRate', 'ipConnectionLimit', 'inRateLimit', 'inBurst', 'verbose',
];

module.exports = { parse, usage, FLAGS, RUNTIME_KEYS };
