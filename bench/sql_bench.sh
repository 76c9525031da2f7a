#!/usr/bin/env bash
# bench/sql_bench.sh: the SQL plugin benchmark, for `make bench`. Starts the
# private PostgreSQL cluster "bench-sql" (durable settings: fsync and synchronous
# commit on), runs bin/daz with bench/sql_config.lua against a fresh
# database, and prints JSON lines:
#   {"bench":"sql.copy_rows_per_s",...}  {"bench":"sql.insert_rows_per_s",...}
#   {"bench":"sql.copy_vs_insert",...}
# Usage: bench/sql_bench.sh   (from anywhere; builds bin/daz if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s bin/daz

was_running=
scripts/pg-local --name bench-sql status >/dev/null 2>&1 && was_running=1
scripts/pg-local --name bench-sql start >/dev/null
base=$(scripts/pg-local --name bench-sql url)
db="daz_bench_$$"
scripts/pg-local --name bench-sql psql -X -q -c "CREATE DATABASE $db" >/dev/null
url=${base/\/\/\/daz\?/\/\/\/$db?}
log=$(mktemp)
spool=$(mktemp -d)
cleanup() {
  rm -rf "$log" "$spool"
  scripts/pg-local --name bench-sql psql -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  [ -n "$was_running" ] || scripts/pg-local --name bench-sql stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

DAZ_CORE__DATABASE__URL=$url DAZ_SPOOL__DIR=$spool bin/daz -config bench/sql_config.lua > "$log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  grep -q '"msg":"BENCH ' "$log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" || true
line=$(grep -o '"msg":"BENCH .*"}$' "$log" || true)
if [ -z "$line" ]; then
  echo "the SQL benchmark did not report; its log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
json=$(echo "$line" | sed 's/^"msg":"BENCH //; s/"}$//; s/\\"/"/g')
echo "$json" | jq -c '{bench:"sql.copy_rows_per_s", value: .copy_rows_per_s, rows: .copy_rows,
  committed: .copy_committed, seconds: .copy_seconds, batches, aim: 100000}'
echo "$json" | jq -c '{bench:"sql.insert_rows_per_s", value: .insert_rows_per_s, rows: .insert_rows,
  committed: .insert_committed, seconds: .insert_seconds, concurrency: .pool_size}'
echo "$json" | jq -c '{bench:"sql.copy_vs_insert", value: .ratio, aim: 20}'
