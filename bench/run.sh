#!/usr/bin/env bash
# pgturso benchmark: builds and installs the extension (release; skip with
# PGTURSO_BENCH_SKIP_SETUP=1), starts a throwaway PostgreSQL 15 cluster and sqld on loopback under
# .tmp/bench, runs workloads W1-W5b through pgturso, test_decoding and directly against sqld,
# prints the results, verifies every Turso table against PostgreSQL row by row, stops everything.
# Options (environment): PGTURSO_BENCH_SCALE (row-count multiplier, default 1),
# PGTURSO_BENCH_ROUNDS (rounds of W1-W4, default 3; medians are reported),
# PGTURSO_BENCH_PLUGIN_OPTIONS (extra pgturso options, "name=value,name=value").
# Exit status: 0 = ran and verified (targets are only reported), 1 = verification mismatch, 2 = error.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PGTURSO_BENCH_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh --release
fi
source scripts/lib.sh
unset RUST_BACKTRACE
trap stop_all EXIT
WORK="$ROOT/.tmp/bench"
mkdir -p "$WORK"
start_pg "$WORK/pg"
start_sqld "$WORK/sqld"
# a 1M-row transaction should not trigger checkpoints while it is written
psql -X -q -d postgres -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "SELECT pg_reload_conf()" >/dev/null
rc=0
BENCH_DIR="$WORK" PG_LOG="$WORK/pg/server.log" python3 "$ROOT/bench/bench.py" || rc=$?
exit "$rc"
