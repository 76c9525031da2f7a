#!/usr/bin/env bash
# bench/http_bench.sh: the Lua `http` API figures for `make bench` — RSS
# before and after the first request, requests/s from Lua to the loopback
# test server (spec/support/http-server) at 1 and 100 in flight, p99 per
# request. Starts the private PostgreSQL cluster "bench" when it is not
# running (bin/daz needs a database) and stops what it started.
# stdout: one JSON line {"bench":"http",...}. Knobs: DAZ_BENCH_HTTP_N1,
# DAZ_BENCH_HTTP_N100 (requests in each phase).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s bin/daz

work=$(mktemp -d /tmp/daz-http-bench.XXXXXX)
db="daz_httpbench_$$"
srv_pid=
daz_pid=
pg_started=
cleanup() {
  [ -n "$daz_pid" ] && kill -TERM "$daz_pid" 2>/dev/null || true
  [ -n "$srv_pid" ] && kill -TERM "$srv_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  scripts/pg-local --name bench psql -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  [ -n "$pg_started" ] && scripts/pg-local --name bench stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! scripts/pg-local --name bench status >/dev/null 2>&1; then
  scripts/pg-local --name bench start >/dev/null
  pg_started=1
fi
scripts/pg-local --name bench psql -X -q -c "CREATE DATABASE $db" >/dev/null
base=$(scripts/pg-local --name bench url)

node spec/support/http-server/server.js > "$work/server.out" 2>&1 &
srv_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(grep -o '"port":[0-9]*' "$work/server.out" | head -1 | cut -d: -f2 || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the HTTP test server did not start" >&2; cat "$work/server.out" >&2; exit 1; }

DAZ_LOCAL_DATABASE_URL=${base/\/\/\/daz\?/\/\/\/$db?} DAZ_SPOOL__DIR=$work/spool \
  DAZ_BENCH_HTTP_URL="http://127.0.0.1:$port" DAZ_BENCH_HTTP_PORT=$port \
  bin/daz -config bench/http_config.lua > "$work/daz.log" 2>&1 &
daz_pid=$!
for _ in $(seq 1 1200); do
  grep -q '"msg":"BENCH ' "$work/daz.log" && break
  kill -0 "$daz_pid" 2>/dev/null || break
  sleep 0.1
done
line=$(grep -o '"msg":"BENCH {.*"}$' "$work/daz.log" || true)
if [ -z "$line" ]; then
  echo "the HTTP benchmark did not report; its log:" >&2
  tail -n 20 "$work/daz.log" >&2
  exit 1
fi
echo "$line" | sed 's/^"msg":"BENCH //; s/"}$//; s/\\"/"/g' | jq -c '{bench:"http"} + .'
