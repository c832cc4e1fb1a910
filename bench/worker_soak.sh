#!/usr/bin/env bash
# The background worker over a long run (issue 15: "The worker's memory stays flat over a
# 1,000,000-change soak; an idle worker uses under 1% of a core"). A publication of one table
# s(id, v, n) is replicated by pgturso's worker (turso_start) into sqld on loopback, while one psql
# session per round writes ROUNDS x 50,000 row changes in the transactions bench/soak.sh writes:
# 100 transactions inserting 100 rows each, then three UPDATEs of those 10,000 rows (one
# transaction each), then one DELETE of 10,000 rows. Unlike bench/soak.sh the DELETE removes the
# rows of the round before (round 1: 10,000 rows copied by turso_start), so that s ends holding the
# last round's rows and the final comparison has something to compare. After each round it waits
# until the worker's slot has confirmed the WAL flushed then and reads the worker's memory from
# /proc/<pid>/status: RssAnon (anonymous memory: the worker's own heap, what a leak grows) and
# VmRSS (RssAnon plus the library and the shared buffers the process has touched, which grows as
# it touches more of them).
# Then the worker's CPU time (utime + stime, /proc/<pid>/stat) over 30 s with no writes at all, and
# over 30 s while a table outside the publication gets 10 one-row transactions a second (the worker
# still decodes that WAL, and skips it), and over 30 s while pgbench writes that table as fast as
# it can (one-row transactions, 2 clients); last, whether Turso's s equals PostgreSQL's.
# Usage: bash bench/worker_soak.sh [ROUNDS]   (default 20 rounds = 1,000,000 changes)
# Options (environment): PGTURSO_BENCH_SKIP_SETUP=1 (use the pgturso.so already installed),
# PGTURSO_BENCH_PGBIN (a PostgreSQL bin directory to use instead of the system one; export
# PG_MAJOR to match), PGTURSO_BENCH_IDLE_SECONDS (each CPU window, default 30).
# Exit status: 0 = ran and s is equal (targets are only reported), 1 = mismatch, 2 = error (a
# failed command or measurement).
set -eEuo pipefail
trap '[ "$BASH_SUBSHELL" -gt 0 ] || echo "worker_soak.sh: line $LINENO: a command failed" >&2; exit 2' ERR
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
IDLE_S=${PGTURSO_BENCH_IDLE_SECONDS:-30}
OTHER_RATE=10      # one-row transactions per second into a table outside the publication
BENCH_NAME=worker_soak
source bench/servers.sh
source bench/soak_round.sh
fail() { echo "measurement failed: $*" >&2; exit 2; }
with_pgturso
q -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE TABLE s(id int PRIMARY KEY, v text, n int);
-- Round 0: the rows round 1 deletes, copied by turso_start.
INSERT INTO s SELECT g, 'round 0 ' || g, g FROM generate_series(1, 10000) g;
CREATE TABLE other(id bigserial PRIMARY KEY, t timestamptz NOT NULL);
CREATE PUBLICATION p FOR TABLE s;
SELECT turso_start('p');
SQL
slot=$(q -c "SELECT slot FROM pgturso.publications WHERE pubname = 'p'")
[ -n "$slot" ] || fail "no slot in pgturso.publications"
# The worker starts once turso_start's transaction has ended.
pid=
for _ in $(seq 100); do
  pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgturso publication'")
  [ -z "$pid" ] || break
  sleep 0.1
done
[ -n "$pid" ] || fail "no worker in pg_stat_activity 10 s after turso_start"
# mem FIELD: a field of the worker's /proc/<pid>/status, in kB.
mem() { awk -v f="$1:" '$1 == f { print $2; found = 1 } END { exit !found }' "/proc/$pid/status" || fail "no $1 for the worker ($pid)"; }
# ticks: the worker's utime + stime (fields 14 and 15 of /proc/<pid>/stat; the command name,
# field 2, is in parentheses and has spaces: count from the last ')').
ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }' || fail "no /proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
caught_up "$slot" "NULL;" >/dev/null  # the initial copy
echo "worker pid $pid; $ROUNDS rounds of 50,000 changes"
declare -A anon
for r in $(seq 1 "$ROUNDS"); do
  base=$(( r * 10000 ))
  t0=$(now)
  soak_round_sql "$r" "$base" "id > $((base - 10000)) AND id <= $base" | q -v ON_ERROR_STOP=1
  t1=$(now)
  done_at=$(caught_up "$slot" "NULL;" | awk '{ print $2 }')
  anon[$r]=$(mem RssAnon)
  echo "round $r: $(( r * 50000 )) changes, RssAnon ${anon[$r]} kB, VmRSS $(mem VmRSS) kB, replicated in $(calc "f'{$done_at - $t0:.2f}'") s (writes $(calc "f'{$t1 - $t0:.2f}'") s)"
done
[ "$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgturso publication'")" = "$pid" ] ||
  fail "the worker ($pid) restarted during the soak: see $WORK/pg/server.log"
# Idle: nothing written at all. VACUUM first (its WAL would otherwise land in the window), then
# wait until the worker has passed it.
q -c "VACUUM ANALYZE" >/dev/null
caught_up "$slot" "NULL;" >/dev/null
# The WAL written meanwhile (by anyone, the worker's own steps included) is printed beside it.
lsn0=$(q -c "SELECT pg_current_wal_insert_lsn()")
c0=$(ticks); t0=$(now)
sleep "$IDLE_S"
c1=$(ticks); t1=$(now)
idle=$(calc "f'{($c1 - $c0) / $hz / ($t1 - $t0) * 100:.2f}'")
idle_wal=$(q -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn0') / 1024)")
# Idle with OTHER_RATE one-row transactions a second into `other`, which is not in the publication,
# from one server session (each commit at its own time slot, so the rate does not drift).
c0=$(ticks); t0=$(now)
q -v ON_ERROR_STOP=1 -c "DO \$\$
DECLARE
    t0 float8 := extract(epoch FROM clock_timestamp());
BEGIN
    FOR i IN 1 .. $(( IDLE_S * OTHER_RATE )) LOOP
        INSERT INTO other(t) VALUES (clock_timestamp());
        COMMIT;
        PERFORM pg_sleep(t0 + i::float8 / $OTHER_RATE - extract(epoch FROM clock_timestamp()));
    END LOOP;
END
\$\$" >/dev/null
c1=$(ticks); t1=$(now)
busy=$(calc "f'{($c1 - $c0) / $hz / ($t1 - $t0) * 100:.2f}'")
# The same table written as fast as pgbench can (the worker's steps then run back to back, each
# decoding WAL it skips).
echo "INSERT INTO other(t) VALUES (clock_timestamp());" > "$WORK/other.sql"
c0=$(ticks); t0=$(now)
flat_out=$(pgbench -n -c 2 -j 2 -T "$IDLE_S" -f "$WORK/other.sql" postgres 2>&1)
c1=$(ticks); t1=$(now)
flat=$(calc "f'{($c1 - $c0) / $hz / ($t1 - $t0) * 100:.2f}'")
flat_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$flat_out" | head -1)
[ -n "$flat_tps" ] || fail "no tps in pgbench's output: $flat_out"
caught_up "$slot" "NULL;" >/dev/null
[ "$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgturso publication'")" = "$pid" ] ||
  fail "the worker ($pid) restarted: see $WORK/pg/server.log"
# Equal: count, sums and extremes of s.
check="count(*), sum(id), sum(n), sum(length(v)), min(v), max(v) FROM s"
pg=$(q -c "SELECT $check" | tr '|' '\t')
turso=$(turso_query "SELECT $check" | tail -1)
equal=yes
if [ "$pg" != "$turso" ]; then equal=no; echo "MISMATCH $check: PostgreSQL $pg, Turso $turso"; fi
read -r txns rows state <<<"$(q -F ' ' -c "SELECT txns, rows, state FROM pgturso.publications WHERE pubname = 'p'")"
echo "replicated by the worker: $txns transactions, $rows row changes (state $state)"
echo "worker CPU, ${IDLE_S} s with no writes: $idle% of one core (WAL written meanwhile: $idle_wal kB)"
echo "worker CPU, ${IDLE_S} s with $OTHER_RATE one-row transactions/s into a table outside the publication: $busy% of one core"
echo "worker CPU, ${IDLE_S} s while pgbench writes that table at full speed ($flat_tps one-row transactions/s): $flat% of one core"
echo "tables equal: $equal"
met() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo met; else echo missed; fi; }
# Flat memory: round 1 warms the caches (catalog and relation caches, the decoding context's first
# blocks, the HTTP client), so round 2 is the baseline; the last round's RssAnon may exceed it by
# at most 10% or 5 MB, whichever is larger (allocator noise). A leak of even 10 bytes per change
# would add about 10 MB over 1,000,000 changes.
if [ "$ROUNDS" -ge 3 ]; then
  a2=${anon[2]} last=${anon[$ROUNDS]}
  limit=$(calc "max($a2 * 11 // 10, $a2 + 5120)")
  echo "target: memory flat over $(( ROUNDS * 50000 )) changes (RssAnon after round $ROUNDS, $last kB, <= $limit kB: round 2's $a2 kB + max(10%, 5 MB)): $(met "$last <= $limit")"
else
  echo "target: memory flat: not judged (needs 3 rounds or more)"
fi
echo "target: idle worker < 1% of a core ($idle%): $(met "$idle < 1")"
[ "$equal" = yes ] || exit 1
