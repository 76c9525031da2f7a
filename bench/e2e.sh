#!/usr/bin/env bash
# bench/e2e.sh: the end-to-end benchmarks of issue 9, for `make bench`.
# Starts the private PostgreSQL cluster "bench" (durable settings) with a
# fresh database, the test CyTube server (spec/support/cytube-server), runs
# bench/e2e.js (daz processes and the socket.io-client baseline), and stops
# and removes everything again, also on failure or Ctrl-C.
# stdout: JSON lines {"bench":"memory"|"startup"|"flood"|"latency",...}.
# Exit 0, or non-zero when the flood lost rows or a phase failed.
# Knobs (environment): BENCH_FLOOD_N, BENCH_LAT_N, BENCH_LAT_SPACING_MS,
# BENCH_LOAD_RATE, BENCH_IDLE_S, BENCH_ROOMS, BENCH_STARTS, BENCH_ONLY
# (see bench/e2e.js); BENCH_KEEP=1 keeps the logs (path printed).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s bin/daz

srv_dir=spec/support/cytube-server
if [ ! -f "$srv_dir/node_modules/socket.io/package.json" ] || [ ! -f "$srv_dir/node_modules/socket.io-client/package.json" ]; then
  (cd "$srv_dir" && npm ci --silent --no-audit --no-fund) >&2
fi

work=$(mktemp -d /tmp/daz-e2e-bench.XXXXXX)
mkdir -p "$work/pids"
db="daz_e2e_$$"
srv_pid=
pg_started=
cleanup() {
  local rc=$?
  for f in "$work"/pids/*; do
    [ -e "$f" ] || continue
    kill -KILL "$(basename "$f")" 2>/dev/null || true
  done
  if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  if [ -n "$pg_started" ]; then
    scripts/pg-local --name bench psql -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [ "$pg_started" = cluster ] && { scripts/pg-local --name bench stop >/dev/null 2>&1 || true; }
  fi
  if [ "${BENCH_KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
    echo "bench/e2e.sh: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A cluster already running (scripts/bench's) is left running; a fresh
# database either way.
if scripts/pg-local --name bench status >/dev/null 2>&1; then
  pg_started=db
else
  scripts/pg-local --name bench start >/dev/null
  pg_started=cluster
fi
scripts/pg-local --name bench psql -X -q -c "CREATE DATABASE $db" >/dev/null
base=$(scripts/pg-local --name bench url)
url=${base/\/\/\/daz\?/\/\/\/$db?}

node "$srv_dir/server.js" --port 0 --ping-timeout 120000 > "$work/server.out" 2> "$work/server.err" &
srv_pid=$!
port=
for _ in $(seq 1 200); do
  port=$(sed -n 's/^{"ready":true,"port":\([0-9]*\)}$/\1/p' "$work/server.out")
  [ -n "$port" ] && break
  kill -0 "$srv_pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$port" ]; then
  echo "bench/e2e.sh: the test CyTube server did not start:" >&2
  cat "$work/server.err" >&2
  exit 1
fi

BENCH_SERVER_URL="http://127.0.0.1:$port" BENCH_DB_URL="$url" BENCH_WORK="$work" \
  node bench/e2e.js
