# Sourced by bench/worker.sh and bench/schema.sh, from the repository root, with BENCH_NAME set:
# builds and installs a release build (unless PGTURSO_BENCH_SKIP_SETUP=1), puts
# PGTURSO_BENCH_PGBIN first on PATH when given, starts a throwaway PostgreSQL and sqld under
# .tmp/bench-$BENCH_NAME (stopped on exit) and defines q, psql on that cluster's postgres database.
set -euo pipefail
if [ "${PGTURSO_BENCH_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh --release
fi
source scripts/lib.sh
if [ -n "${PGTURSO_BENCH_PGBIN:-}" ]; then export PATH="$PGTURSO_BENCH_PGBIN:$PATH"; fi
unset RUST_BACKTRACE
trap stop_all EXIT
WORK="$ROOT/.tmp/bench-$BENCH_NAME"
mkdir -p "$WORK"
start_pg "$WORK/pg"
start_sqld "$WORK/sqld"
q() { psql -X -q -At -d postgres "$@"; }
q -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "SELECT pg_reload_conf()" >/dev/null
