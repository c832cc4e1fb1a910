#!/usr/bin/env bash
# Memory over a long run: replicates ROUNDS x 50,000 changes (inserts, updates, deletes in
# 100-row transactions) through ONE backend and prints that backend's RSS after each round.
# Usage: bash bench/soak.sh [ROUNDS]   (default 20 rounds = 1,000,000 changes)
# Set PGTURSO_BENCH_SKIP_SETUP=1 to use the pgturso.so already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
[ "${PGTURSO_BENCH_SKIP_SETUP:-}" = 1 ] || bash scripts/setup.sh --release
source scripts/lib.sh
trap stop_all EXIT
start_pg "$ROOT/.tmp/soak/pg"
start_sqld "$ROOT/.tmp/soak/sqld"
psql -X -q -d postgres -c "CREATE TABLE s(id int PRIMARY KEY, v text, n int)" \
  -c "SELECT 'init' FROM pg_create_logical_replication_slot('soak', 'pgturso')" >/dev/null
# One psql session does all the decoding, so its backend's memory is what is measured.
{
  echo "\\set url '$SQLD_URL'"
  echo "\\set token '$TURSO_TOKEN'"
  for r in $(seq 1 "$ROUNDS"); do
    base=$(( (r - 1) * 10000 ))
    # 100 transactions of 100 inserts, then three updates and a delete of those 10,000 rows:
    # 50,000 changes per round
    for t in $(seq 0 99); do
      echo "INSERT INTO s SELECT g, 'round $r ' || g, g FROM generate_series($((base + t * 100 + 1)), $((base + t * 100 + 100))) g;"
    done
    echo "UPDATE s SET n = n + 1, v = v || 'u' WHERE id > $base;"
    echo "UPDATE s SET n = n + 1 WHERE id > $base;"
    echo "UPDATE s SET v = 'x' WHERE id > $base;"
    echo "DELETE FROM s WHERE id > $base;"
    echo "SELECT count(*) AS txns FROM pg_logical_slot_get_changes('soak', NULL, NULL, 'url', :'url', 'auth', :'token') \\gset"
    echo "SELECT format('round %s: %s changes, %s transactions, backend RSS %s MB', $r, $r * 50000, :txns, (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmRSS:\\s+(\\d+)'))[1]::int / 1024) AS line \\gset"
    echo "\\echo :line"
  done
} | psql -X -q -v ON_ERROR_STOP=1 -d postgres
echo "Turso rows (expected 0 after the deletes): $(turso_query 'SELECT count(*) FROM s' | tail -1)"
echo "PostgreSQL rows: $(psql -X -At -d postgres -c 'SELECT count(*) FROM s')"
