#!/usr/bin/env bash
# Memory over a long run: ROUNDS x 50,000 changes (100-row insert transactions, then updates and
# a delete of those rows), written by one session and decoded by ANOTHER session that does nothing
# else, once through pgturso and once through test_decoding (the baseline, same WAL). Prints the RSS
# of both decoding backends after each round.
# Usage: bash bench/soak.sh [ROUNDS]   (default 20 rounds = 1,000,000 changes)
# Set PGTURSO_BENCH_SKIP_SETUP=1 to use the pgturso.so already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
[ "${PGTURSO_BENCH_SKIP_SETUP:-}" = 1 ] || bash scripts/setup.sh --release
source scripts/lib.sh
source bench/soak_round.sh
WORK="$ROOT/.tmp/soak"
trap 'exec 3>&- 4>&- 2>/dev/null || true; stop_all' EXIT
start_pg "$WORK/pg"
start_sqld "$WORK/sqld"
psql -X -q -d postgres -c "CREATE TABLE s(id int PRIMARY KEY, v text, n int)" \
  -c "SELECT 'init' FROM pg_create_logical_replication_slot('soak', 'pgturso')" \
  -c "SELECT 'init' FROM pg_create_logical_replication_slot('soak_td', 'test_decoding')" >/dev/null

# Two long-lived decoding sessions, fed through FIFOs; each prints one line per round.
rm -f "$WORK/pgturso.in" "$WORK/td.in"  # left by an earlier run
mkfifo "$WORK/pgturso.in" "$WORK/td.in"
psql -X -q -At -d postgres < "$WORK/pgturso.in" > "$WORK/pgturso.out" 2>&1 &
STOP_CMDS+=("kill $! 2>/dev/null || true")
psql -X -q -At -d postgres < "$WORK/td.in" > "$WORK/td.out" 2>&1 &
STOP_CMDS+=("kill $! 2>/dev/null || true")
exec 3> "$WORK/pgturso.in" 4> "$WORK/td.in"
echo "\\set url '$SQLD_URL'" >&3
echo "\\set token '$TURSO_TOKEN'" >&3
rss="(regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmRSS:\\s+(\\d+)'))[1]::int / 1024"

wait_lines() { # FILE N: wait until FILE has N lines
  until [ "$(wc -l < "$1")" -ge "$2" ]; do sleep 0.2; done
}

for r in $(seq 1 "$ROUNDS"); do
  base=$(( (r - 1) * 10000 ))
  soak_round_sql "$r" "$base" "id > $base" | psql -X -q -v ON_ERROR_STOP=1 -d postgres
  echo "SELECT count(*) || ' transactions, RSS ' || $rss || ' MB' FROM pg_logical_slot_get_changes('soak', NULL, NULL, 'url', :'url', 'auth', :'token');" >&3
  echo "SELECT count(*) || ' rows, RSS ' || $rss || ' MB' FROM pg_logical_slot_get_changes('soak_td', NULL, NULL);" >&4
  wait_lines "$WORK/pgturso.out" "$r"
  wait_lines "$WORK/td.out" "$r"
  echo "round $r: $((r * 50000)) changes; pgturso backend: $(sed -n "${r}p" "$WORK/pgturso.out"); test_decoding backend: $(sed -n "${r}p" "$WORK/td.out")"
done
echo "Turso rows (expected 0 after the deletes): $(turso_query 'SELECT count(*) FROM s' | tail -1)"
echo "PostgreSQL rows: $(psql -X -At -d postgres -c 'SELECT count(*) FROM s')"
