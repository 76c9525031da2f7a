#!/usr/bin/env node
'use strict';
// End-to-end benchmarks of bin/daz against the test CyTube server and a real
// PostgreSQL (issue 9). Run by bench/e2e.sh, which starts the database
// cluster and the test server and cleans up; this script starts and stops
// the daz processes and the socket.io-client baseline itself.
//
// Environment (set by bench/e2e.sh):
//   BENCH_SERVER_URL  test server, e.g. http://127.0.0.1:N
//   BENCH_DB_URL      libpq URI of a fresh database for daz
//   BENCH_WORK        directory for logs and spools; BENCH_WORK/pids/<pid> for each child
//   DAZ_BIN           default bin/daz
// Knobs (defaults are the figures):
//   BENCH_FLOOD_N=200000  BENCH_LAT_N=1000  BENCH_LAT_SPACING_MS=250
//   BENCH_LOAD_RATE=5000  BENCH_IDLE_S=10   BENCH_ROOMS=100  BENCH_STARTS=5
//   BENCH_FLOOD_TIMEOUT_S=240 (rows not committed by then count as lost)
//   BENCH_ONLY=memory,startup,flood,latency (a subset, for quick runs)
//
// stdout: one JSON object per benchmark ({"bench":"flood",...}, "latency",
// "memory", "startup"); progress on stderr. Exit 0; 3 when the flood lost
// rows or did not finish within BENCH_FLOOD_TIMEOUT_S, or a phase failed
// (the figures so far are still printed).
const fs = require('fs');
const path = require('path');
const http = require('http');
const net = require('net');
const { spawn } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const env = process.env;
const SERVER = env.BENCH_SERVER_URL;
const DB_URL = env.BENCH_DB_URL;
const WORK = env.BENCH_WORK || fs.mkdtempSync('/tmp/daz-bench-');
const DAZ_BIN = path.resolve(ROOT, env.DAZ_BIN || 'bin/daz');
const num = (k, d) => (env[k] !== undefined && env[k] !== '' ? Number(env[k]) : d);
const FLOOD_N = num('BENCH_FLOOD_N', 200000);
const LAT_N = num('BENCH_LAT_N', 1000);
const LAT_SPACING = num('BENCH_LAT_SPACING_MS', 250); // > the bot's own chat pacing (205 ms at 10/s), so it is not measured
const LOAD_RATE = num('BENCH_LOAD_RATE', 5000);
const IDLE_S = num('BENCH_IDLE_S', 10);
const ROOMS = num('BENCH_ROOMS', 100);
const STARTS = num('BENCH_STARTS', 5);
const FLOOD_TIMEOUT_S = num('BENCH_FLOOD_TIMEOUT_S', 240); // rows not committed by then count as lost
const STARTUP_LOGIN_DELAY = 100; // ms, subtracted from the start-up figure
const ONLY = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(',')) : null;
const LAT_USERS = 250; // probe users (round robin): each speaks every 250 * spacing ms

if (!SERVER || !DB_URL) {
  process.stderr.write('bench/e2e.js: BENCH_SERVER_URL and BENCH_DB_URL are required (run bench/e2e.sh)\n');
  process.exit(2);
}
fs.mkdirSync(path.join(WORK, 'pids'), { recursive: true });

const say = (msg) => process.stderr.write(`  [e2e ${new Date().toISOString().substring(11, 19)}] ${msg}\n`);
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);

// ---- children ----------------------------------------------------------------

const children = new Set();
function track(child) {
  children.add(child);
  const pidFile = path.join(WORK, 'pids', String(child.pid));
  fs.writeFileSync(pidFile, '');
  child.on('exit', () => {
    children.delete(child);
    fs.rmSync(pidFile, { force: true });
  });
  return child;
}
function killAll() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch (e) { /* gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(130); });

function stopChild(child, timeoutMs = 10000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => { clearTimeout(t); resolve(code); });
    child.kill('SIGTERM');
  });
}

function rssKb(pid, field = 'VmRSS') {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

// CPU seconds (user + system, all threads) from a /proc/PID/stat text;
// with children, also what its waited-for children used.
function statCpu(text, children = false) {
  const f = text.substring(text.lastIndexOf(')') + 2).split(' ');
  let ticks = Number(f[11]) + Number(f[12]);
  if (children) ticks += Number(f[13]) + Number(f[14]);
  return ticks / 100; // USER_HZ is 100 on Linux
}

// CPU seconds a process has used so far, or null when it is gone.
function cpuSeconds(pid) {
  try {
    return statCpu(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch (e) {
    return null;
  }
}

// CPU seconds used so far by every process named `comm` (e.g. all of
// PostgreSQL's backends), including exited ones as far as their parent
// collected them (good enough for a before/after).
function cpuSecondsOf(comm) {
  let total = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue;
    let text;
    try { text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch (e) { continue; }
    if (text.substring(text.indexOf('(') + 1, text.lastIndexOf(')')) === comm) total += statCpu(text, true);
  }
  return total;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : JSON.stringify(body);
    const req = http.request(url, {
      method,
      agent: false, // a fresh connection each time: no race with the server's keep-alive close
      headers: data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {},
      timeout: 30000,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}
async function control(method, p, body) {
  let r;
  try {
    r = await request(method, SERVER + p, body);
  } catch (e) {
    if (method !== 'GET') throw e;
    await sleep(200);
    r = await request(method, SERVER + p, body); // one retry for a read
  }
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${p} -> ${r.status} ${r.text}`);
  return JSON.parse(r.text);
}

// ---- psql, one persistent session -------------------------------------------

class Psql {
  constructor(url) {
    this.proc = track(spawn('psql', ['-X', '-A', '-t', '-q', url], { stdio: ['pipe', 'pipe', 'pipe'] }));
    this.buf = '';
    this.waiting = [];
    this.proc.stdout.on('data', (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.substring(0, i);
        this.buf = this.buf.substring(i + 1);
        const w = this.waiting.shift();
        if (w) w.resolve(line);
      }
    });
    this.proc.stderr.on('data', (d) => {
      const w = this.waiting.shift();
      if (w) w.reject(new Error(`psql: ${String(d).trim()}`));
    });
  }

  // One query answering exactly one row of one column.
  value(sql) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(`${sql.replace(/;?\s*$/, '')};\n`);
      setTimeout(() => reject(new Error(`psql timeout: ${sql}`)), 30000).unref();
    });
  }

  async count(channel) {
    return Number(await this.value(`SELECT count(*) FROM daz_chat_log WHERE channel = '${channel}'`));
  }

  // Rows of the channel committed since the last call, counted from the id
  // seen last: polling every 50 ms with a full count(*) would make the
  // benchmark's own queries a noticeable share of the database's work. The
  // batch writer commits one batch at a time, so ids only grow; the final
  // figure is still a full count.
  async countNew(channel, state) {
    const v = await this.value(`SELECT count(*) || ' ' || coalesce(max(id), ${state.lastId}) FROM daz_chat_log WHERE channel = '${channel}' AND id > ${state.lastId}`);
    const [n, id] = v.split(' ').map(Number);
    state.lastId = id;
    state.count += n;
    return state.count;
  }

  close() {
    this.proc.stdin.end();
    return stopChild(this.proc, 3000);
  }
}

// ---- daz ---------------------------------------------------------------------

let runSerial = 0;
async function startDaz({ channel, rooms = 1, admins = 0, loginDelay = null }) {
  const id = ++runSerial;
  const logPath = path.join(WORK, `daz-${id}-${channel}.log`);
  const port = await freePort();
  const e = {
    ...env,
    DAZ_CORE__DATABASE__URL: DB_URL,
    DAZ_HEALTH__PORT: String(port),
    DAZ_SPOOL__DIR: path.join(WORK, `spool-${id}`),
    DAZ_BENCH_SERVER: SERVER,
    DAZ_BENCH_CHANNEL: channel,
    DAZ_BENCH_ROOMS: String(rooms),
    DAZ_BENCH_ADMINS: String(admins),
  };
  if (loginDelay !== null) e.DAZ_CORE__LOGIN_DELAY_MS = String(loginDelay);
  const fd = fs.openSync(logPath, 'w');
  const t0 = Date.now();
  const child = track(spawn(DAZ_BIN, ['-config', 'bench/e2e_config.lua'], { cwd: ROOT, env: e, stdio: ['ignore', fd, fd] }));
  fs.closeSync(fd);
  return { child, pid: child.pid, t0, logPath, port, channel, rooms };
}

// JSON log lines of a daz run whose msg matches re.
function logLines(d, re) {
  let text;
  try { text = fs.readFileSync(d.logPath, 'utf8'); } catch (e) { return []; }
  const out = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    let o;
    try { o = JSON.parse(line); } catch (e) { continue; }
    if (o.msg && re.test(o.msg)) out.push(o);
  }
  return out;
}

// Waits until every room logged "joined as"; returns those lines.
async function waitJoined(d, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const lines = logLines(d, /: joined as /);
    if (lines.length >= d.rooms) return lines;
    if (d.child.exitCode !== null) throw new Error(`daz exited (${d.child.exitCode}) before joining; log ${d.logPath}`);
    if (Date.now() > end) throw new Error(`daz joined ${lines.length} of ${d.rooms} room(s) in ${timeoutMs} ms; log ${d.logPath}`);
    await sleep(20);
  }
}

async function metricsOf(d) {
  try {
    const r = await request('GET', `http://127.0.0.1:${d.port}/metrics`);
    const sum = (name) => {
      let s = 0;
      for (const m of r.text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) s += Number(m[1]);
      return s;
    };
    return { bus_dropped: sum('daz_events_dropped_total'), plugin_dropped: sum('daz_plugin_dropped_total') };
  } catch (e) {
    return { bus_dropped: null, plugin_dropped: null };
  }
}

// ---- the baseline consumer ----------------------------------------------------

function startConsumer(channel, expect) {
  const child = track(spawn(process.execPath, [path.join(__dirname, 'consumer.js'), SERVER, channel, '--expect', String(expect || 0)],
    { stdio: ['ignore', 'pipe', 'inherit'] }));
  const c = { child, pid: child.pid, events: [], waiters: [] };
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const o = JSON.parse(buf.substring(0, i));
      buf = buf.substring(i + 1);
      c.events.push(o);
      for (const w of c.waiters.slice()) {
        if (w.pred(o)) {
          c.waiters.splice(c.waiters.indexOf(w), 1);
          w.resolve(o);
        }
      }
    }
  });
  c.wait = (pred, timeoutMs, what) => new Promise((resolve, reject) => {
    const found = c.events.find(pred);
    if (found) return resolve(found);
    c.waiters.push({ pred, resolve });
    setTimeout(() => reject(new Error(`baseline consumer: no ${what} within ${timeoutMs} ms`)), timeoutMs).unref();
  });
  return c;
}

// ---- phases ------------------------------------------------------------------

async function phaseMemory() {
  say(`memory: daz with 1 room and the baseline consumer, idle ${IDLE_S} s`);
  const d1 = await startDaz({ channel: 'memroom' });
  const base = startConsumer('membase', 0);
  await Promise.all([waitJoined(d1), base.wait((o) => o.event === 'joined', 30000, 'join')]);
  await sleep(IDLE_S * 1000);
  const rss1 = rssKb(d1.pid);
  const baseRss = rssKb(base.pid);
  await stopChild(base.child);
  await stopChild(d1.child);

  say(`memory: daz with ${ROOMS} rooms`);
  const dn = await startDaz({ channel: 'room', rooms: ROOMS });
  const tj = Date.now();
  await waitJoined(dn, 120000);
  const joinMs = Date.now() - tj;
  await sleep(IDLE_S * 1000);
  const rssN = rssKb(dn.pid);
  await stopChild(dn.child);
  const r = {
    bench: 'memory',
    rss_mb_1_room: round(rss1 / 1024, 2),
    [`rss_mb_${ROOMS}_rooms`]: round(rssN / 1024, 2),
    rss_mb_per_room: round((rssN - rss1) / 1024 / (ROOMS - 1), 3),
    baseline_rss_mb: round(baseRss / 1024, 2),
    ratio_1_room_vs_baseline: round(rss1 / baseRss, 3),
    rooms: ROOMS,
    rooms_join_s: round(joinMs / 1000, 2),
    idle_s: IDLE_S,
    aim_rss_mb_1_room: 10,
    aim_rss_mb_per_room: 0.3,
  };
  emit(r);
  return r;
}

async function phaseStartup() {
  say(`startup: ${STARTS} starts, login delay ${STARTUP_LOGIN_DELAY} ms (subtracted)`);
  const samples = [];
  for (let i = 0; i < STARTS; i++) {
    const d = await startDaz({ channel: 'startroom', loginDelay: STARTUP_LOGIN_DELAY });
    const [line] = await waitJoined(d, 30000);
    samples.push(Date.parse(line.ts) - d.t0 - STARTUP_LOGIN_DELAY);
    await stopChild(d.child);
  }
  const sorted = samples.slice().sort((a, b) => a - b);
  const r = {
    bench: 'startup',
    ms: sorted[Math.floor((sorted.length - 1) / 2)],
    min_ms: sorted[0],
    max_ms: sorted[sorted.length - 1],
    samples_ms: samples,
    login_delay_ms_subtracted: STARTUP_LOGIN_DELAY,
    aim_ms: 100,
  };
  emit(r);
  return r;
}

async function waitFlood(id, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const f = await control('GET', `/control/flood?id=${id}`);
    if (f.done) return f;
    if (Date.now() > end) throw new Error(`flood ${id} not done in ${timeoutMs} ms (sent ${f.sent})`);
    await sleep(50);
  }
}

async function phaseFlood() {
  say(`flood baseline: ${FLOOD_N} lines to a bare socket.io-client consumer`);
  const base = startConsumer('floodbase', FLOOD_N);
  await base.wait((o) => o.event === 'joined', 30000, 'join');
  await sleep(500);
  const bf = await control('POST', '/control/flood', { channel: 'floodbase', count: FLOOD_N, users: 1000, tag: `b${process.pid}` });
  const got = await base.wait((o) => o.event === 'count', 600000, `${FLOOD_N} messages`);
  const bfs = await waitFlood(bf.id, 10000);
  const baseSeconds = (got.t_last - bfs.t_first) / 1000;
  const baseRate = FLOOD_N / baseSeconds;
  await stopChild(base.child);
  say(`flood baseline: ${Math.round(baseRate)} events/s`);

  say(`flood: ${FLOOD_N} lines to daz (every default plugin and logger rule), counting rows in daz_chat_log`);
  const d = await startDaz({ channel: 'floodroom' });
  await waitJoined(d);
  await sleep(2000); // plugins register their commands, first timers run
  const psql = new Psql(DB_URL);
  const before = await psql.count('floodroom');
  const progress = { lastId: Number(await psql.value("SELECT coalesce(max(id), 0) FROM daz_chat_log")), count: before };
  const cpu0 = cpuSeconds(d.pid);
  const pg0 = cpuSecondsOf('postgres');
  const ff = await control('POST', '/control/flood', { channel: 'floodroom', count: FLOOD_N, users: 1000, tag: `f${process.pid}` });
  let fstat = await control('GET', `/control/flood?id=${ff.id}`);
  let count = before;
  let tEnd = null;
  let lastChange = Date.now();
  let serverDoneAt = null;
  const hardEnd = Date.now() + FLOOD_TIMEOUT_S * 1000; // keeps `make bench` bounded
  let inFlight = 0;
  for (;;) {
    await sleep(50);
    const c = await psql.countNew('floodroom', progress);
    const now = Date.now();
    if (c !== count) { count = c; lastChange = now; }
    if (!fstat.done) {
      fstat = await control('GET', `/control/flood?id=${ff.id}`);
      if (fstat.done) {
        serverDoneAt = now;
        say(`flood: server sent ${fstat.sent} in ${((fstat.t_last - fstat.t_first) / 1000).toFixed(2)} s; rows so far ${count - before}`);
      }
    }
    inFlight = Math.max(inFlight, fstat.sent - (count - before));
    if (count - before >= FLOOD_N) { tEnd = now; break; }
    if (serverDoneAt !== null && now - lastChange > 20000) break; // stalled: rows lost
    if (now > hardEnd || d.child.exitCode !== null) break;
  }
  const cpu1 = cpuSeconds(d.pid);
  const pg1 = cpuSecondsOf('postgres');
  await sleep(1500); // nothing more may arrive (no row twice either)
  const finalCount = (await psql.count('floodroom')) - before;
  await psql.close();
  const metrics = await metricsOf(d);
  const peakRss = d.child.exitCode === null ? rssKb(d.pid, 'VmHWM') : null;
  const exitCode = await stopChild(d.child, 20000);
  const lost = FLOOD_N - finalCount;
  const seconds = tEnd ? (tEnd - fstat.t_first) / 1000 : null;
  const rate = seconds ? FLOOD_N / seconds : finalCount / ((Date.now() - fstat.t_first) / 1000);
  const r = {
    bench: 'flood',
    events_per_s: Math.round(rate),
    lost,
    baseline_events_per_s: Math.round(baseRate),
    ratio_vs_baseline: round(rate / baseRate, 3),
    n: FLOOD_N,
    rows: finalCount,
    seconds: round(seconds, 2),
    server_send_seconds: round((fstat.t_last - fstat.t_first) / 1000, 2),
    baseline_seconds: round(baseSeconds, 2),
    bus_dropped: metrics.bus_dropped,
    plugin_dropped: metrics.plugin_dropped,
    max_rows_in_flight: inFlight,
    daz_peak_rss_mb: peakRss ? round(peakRss / 1024, 1) : null,
    // What the flood cost daz itself, from first line sent to last row
    // committed: the rest of the time it waited for the server or PostgreSQL.
    daz_cpu_s: cpu0 !== null && cpu1 !== null ? round(cpu1 - cpu0, 2) : null,
    daz_cpu_us_per_event: cpu0 !== null && cpu1 !== null ? round(((cpu1 - cpu0) * 1e6) / FLOOD_N, 1) : null,
    // PostgreSQL's CPU over the same time (every backend of the cluster,
    // also other work on this machine's clusters, so an upper bound).
    postgres_cpu_s: round(pg1 - pg0, 2),
    daz_exit: exitCode,
    timed_out: tEnd === null && Date.now() > hardEnd,
    aim_events_per_s: 20000,
    aim_ratio: 0.5,
  };
  emit(r);
  return r;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

async function waitProbe(id, timeoutMs, loadId) {
  const end = Date.now() + timeoutMs;
  let lastSay = Date.now();
  for (;;) {
    const p = await control('GET', `/control/probe?id=${id}&samples=0`);
    if (p.done) return control('GET', `/control/probe?id=${id}`);
    if (Date.now() > end) throw new Error(`probe ${id} not done in ${timeoutMs} ms (sent ${p.sent})`);
    if (loadId && Date.now() - lastSay > 30000) {
      lastSay = Date.now();
      const f = await control('GET', `/control/flood?id=${loadId}`);
      say(`latency: ${p.sent} sent, ${p.replies} replies, ${p.missing} missing; load ${f.sent} lines, backlog ${f.backlog} B, server RSS ${f.server_rss_mb} MB`);
    }
    await sleep(500);
  }
}

async function phaseLatency() {
  say(`latency: ${LAT_N} x !uptime, ${LAT_SPACING} ms apart, under ${LOAD_RATE} chat events/s`);
  const d = await startDaz({ channel: 'latroom', admins: LAT_USERS });
  await waitJoined(d);
  await sleep(2000);
  const users = Array.from({ length: LAT_USERS }, (_, i) => `lat${i}`);
  // Warm-up: the commands are registered and answer.
  const warm = await control('POST', '/control/probe', { channel: 'latroom', bot: 'dazbot', count: 3, spacing_ms: 200, timeout_ms: 5000, users: users.slice(0, 3) });
  const w = await waitProbe(warm.id, 30000);
  if (w.replies === 0) throw new Error(`latency: the bot never answered !uptime; log ${d.logPath}`);
  const loadSeconds = (LAT_N * LAT_SPACING) / 1000 + 60;
  const load = await control('POST', '/control/flood', { channel: 'latroom', count: Math.ceil(LOAD_RATE * loadSeconds), rate: LOAD_RATE, users: 1000, tag: `l${process.pid}` });
  await sleep(1000);
  const pr = await control('POST', '/control/probe', { channel: 'latroom', bot: 'dazbot', count: LAT_N, spacing_ms: LAT_SPACING, timeout_ms: 5000, users: users.slice(3).concat(users.slice(0, 3)) });
  const p = await waitProbe(pr.id, LAT_N * (LAT_SPACING + 5000) + 60000, load.id);
  const fl = await control('GET', `/control/flood?id=${load.id}`);
  await control('POST', '/control/flood-stop', { id: load.id });
  const loadRate = fl.sent / ((fl.t_last - fl.t_first) / 1000);
  const metrics = await metricsOf(d);
  await stopChild(d.child, 20000);
  const s = p.samples_ms.slice().sort((a, b) => a - b);
  const r = {
    bench: 'latency',
    p50_ms: round(percentile(s, 0.5), 2),
    p90_ms: round(percentile(s, 0.9), 2),
    p99_ms: round(percentile(s, 0.99), 2),
    max_ms: round(s[s.length - 1], 2),
    min_ms: round(s[0], 2),
    commands: p.sent,
    replies: p.replies,
    missing: p.missing,
    spacing_ms: LAT_SPACING,
    load_events_per_s: Math.round(loadRate),
    bus_dropped: metrics.bus_dropped,
    plugin_dropped: metrics.plugin_dropped,
    worst: p.samples_ms.map((ms, i) => [i, round(ms, 1)]).sort((a, b) => b[1] - a[1]).slice(0, 5), // [command #, ms]
    aim_p99_ms: 5,
  };
  emit(r);
  return r;
}

async function main() {
  let failed = false;
  const phases = [['memory', phaseMemory], ['startup', phaseStartup], ['flood', phaseFlood], ['latency', phaseLatency]];
  for (const [name, fn] of phases) {
    if (ONLY && !ONLY.has(name)) continue;
    try {
      const r = await fn();
      if (name === 'flood' && (r.lost !== 0 || r.timed_out)) failed = true;
    } catch (e) {
      failed = true;
      say(`${name} FAILED: ${e && e.stack ? e.stack : e}`);
      emit({ bench: name, error: String(e && e.message ? e.message : e) });
      killAll();
      await sleep(500);
    }
  }
  killAll();
  process.exit(failed ? 3 : 0);
}

main();
