#!/usr/bin/env bash
# Continuous replication benchmark (issue 15): `pgbench -i -s 10`, then `pgbench -c 4 -j 2 -T 60`
# while pgturso's background worker replicates the four pgbench tables (a publication started with
# turso_start) into sqld on loopback. Prints pgbench's rate alone and under replication, the rate at
# which Turso received the transactions, the catch-up time after pgbench stops, the end-to-end lag
# (commit in PostgreSQL -> visible in Turso) percentiles, test_decoding's decode time of the same
# WAL, a backlog of 5,000 one-row transactions (direct and with every request to sqld delayed
# 25 ms; by the worker, and by one turso_replicate_table call of the SQL API), and whether the tables are equal; then the targets, met or missed.
# The lag: a second pgbench (-c 1 -R 20, same -T) inserts rows into lag_probe(id, t = PostgreSQL's
# clock_timestamp()), also in the publication; bench/lag.py polls sqld every 20 ms and takes, for
# each row, the time it was first seen minus t (an upper bound by the polling interval). It writes
# .tmp/bench-worker/lag.csv, tps.csv (pgbench's per-second tps, -P 1) and lag.svg (both over one
# time axis).
# Builds and installs a release build first (skip with PGTURSO_BENCH_SKIP_SETUP=1).
# Options (environment): PGTURSO_BENCH_PGBENCH_SCALE (pgbench -s, default 10),
# PGTURSO_BENCH_SECONDS (pgbench -T, default 60), PGTURSO_BENCH_PGBIN (a PostgreSQL bin directory
# to use instead of the system one), PGTURSO_BENCH_SAVE=1 (also copy lag.csv, tps.csv and lag.svg
# into bench/results/).
# Exit status: 0 = ran and the tables are equal (targets are only reported), 1 = mismatch, 2 = error
# (a failed command or measurement).
set -eEuo pipefail
trap '[ "$BASH_SUBSHELL" -gt 0 ] || echo "worker.sh: line $LINENO: a command failed" >&2; exit 2' ERR
cd "$(dirname "$0")/.."
SCALE=${PGTURSO_BENCH_PGBENCH_SCALE:-10}
SECS=${PGTURSO_BENCH_SECONDS:-60}
PROBE_RATE=20      # lag probe rows per second
POLL_MS=20         # how often bench/lag.py reads them from sqld
BENCH_NAME=worker
source bench/servers.sh
with_pgturso
pgbench -i -q -s "$SCALE" postgres 2>/dev/null
q -v ON_ERROR_STOP=1 <<SQL >/dev/null
ALTER TABLE pgbench_history REPLICA IDENTITY FULL;
CREATE TABLE lag_probe(id bigserial PRIMARY KEY, t double precision NOT NULL);
CREATE PUBLICATION bench FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, lag_probe;
SQL
echo "INSERT INTO lag_probe(t) VALUES (extract(epoch FROM clock_timestamp()));" > "$WORK/probe.sql"
rm -f "$WORK"/probes.* "$WORK"/lag.* "$WORK"/tps.csv "$WORK"/pgbench.out
# pgbench alone first, side by side with the run under replication.
alone=$(pgbench -c 4 -j 2 -T "$SECS" -n postgres 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
t0=$(date +%s.%N)
q -c "SELECT turso_start('bench')" >/dev/null
copy_s=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
slot=$(q -c "SELECT slot FROM pgturso.publications WHERE pubname = 'bench'")
applied() { q -c "SELECT txns FROM pgturso.publications WHERE pubname = 'bench'"; }
before=$(applied)
# test_decoding decodes the same WAL after the catch-up, for comparison.
q -c "SELECT pg_create_logical_replication_slot('bench_td', 'test_decoding')" >/dev/null
export SQLD_URL TURSO_TOKEN
python3 bench/lag.py poll "$WORK" "$POLL_MS" &
poll_pid=$!
STOP_CMDS+=("kill $poll_pid 2>/dev/null || true")
t_start=$(date +%s.%N)
pgbench -c 1 -R "$PROBE_RATE" -T "$SECS" -n -f "$WORK/probe.sql" postgres >"$WORK/probe.out" 2>&1 &
probe_pid=$!
pgbench -c 4 -j 2 -T "$SECS" -P 1 -n postgres >"$WORK/pgbench.out" 2>&1
wait "$probe_pid" || { echo "the lag probe's pgbench failed:" >&2; cat "$WORK/probe.out" >&2; exit 2; }
t_end=$(date +%s.%N)
during=$(( $(applied) - before ))
res=$(caught_up "$slot" "NULL;")
read -r _ done_at end_lsn <<<"$res"
catchup=$(python3 -c "print(f'{$done_at - $t_end:.2f}')")
total=$(( $(applied) - before ))
out=$(cat "$WORK/pgbench.out")
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
probes=$(q -c "SELECT count(*) FROM lag_probe")
[ -n "$tps" ] && [ -n "$xacts" ] || { echo "measurement failed: no tps in pgbench's output" >&2; exit 2; }
# test_decoding over the same WAL (from the slot's start to where pgbench stopped), after the
# catch-up so that it does not compete with the worker.
td_out=$(q -v ON_ERROR_STOP=1 <<SQL
\\timing on
SELECT count(*) FROM pg_logical_slot_get_changes('bench_td', '$end_lsn', NULL, 'skip-empty-xacts', '1');
SQL
)
td_changes=$(head -1 <<<"$td_out")
td_s=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$td_out" | python3 -c "import sys; print(f'{float(sys.stdin.read()) / 1000:.2f}')") ||
  { echo "measurement failed: no time for test_decoding's decoding: $td_out" >&2; exit 2; }
q -c "SELECT pg_drop_replication_slot('bench_td')" >/dev/null
# The lag: every probe row is in Turso now; the poller stops once it has seen the last one.
q -c "SELECT max(id) FROM lag_probe" > "$WORK/probes.stop"
wait "$poll_pid" || { echo "measurement failed: the lag poller did not see every probe row" >&2; exit 2; }
lag_out=$(python3 bench/lag.py report "$WORK" "$t_start" "$SECS" "$POLL_MS" \
  "pgturso continuous replication: pgbench -s $SCALE -c 4 -j 2 -T $SECS") ||
  { echo "measurement failed: no lag report" >&2; exit 2; }
p99=$(sed -n 's/.* p99 \([0-9.]*\) ms.*/\1/p' <<<"$lag_out")
[ -n "$p99" ] || { echo "measurement failed: no lag p99 in: $lag_out" >&2; exit 2; }
results="$WORK/lag.csv, $WORK/tps.csv and the chart $WORK/lag.svg"
if [ "${PGTURSO_BENCH_SAVE:-0}" = 1 ]; then
  mkdir -p bench/results
  cp "$WORK/lag.csv" "$WORK/tps.csv" "$WORK/lag.svg" bench/results/
  results="$results (copied into bench/results/)"
fi
# Equal: counts and sums of every table.
equal=yes
for check in "count(*), sum(abalance) FROM pgbench_accounts" "count(*), sum(bbalance) FROM pgbench_branches" \
             "count(*), sum(tbalance) FROM pgbench_tellers" "count(*), sum(delta) FROM pgbench_history" \
             "count(*), max(id) FROM lag_probe"; do
  pg=$(q -c "SELECT $check" | tr '|' '\t')
  turso=$(turso_query "SELECT $check" | tail -1)
  if [ "$pg" != "$turso" ]; then equal=no; echo "MISMATCH $check: PostgreSQL $pg, Turso $turso"; fi
done
rate=$(python3 -c "print(f'{$during / $SECS:.0f}')")
# backlog FIRST LABEL: with the replication stopped, writes 5,000 one-row transactions (ids FIRST
# on), then times them in one server session from turso_start resuming it until the slot has
# confirmed the last one; sets backlog_s and backlog_rate and checks one_row in Turso.
backlog() {
  q -c "SELECT turso_stop('bench')" >/dev/null
  for i in $(seq "$1" $(( $1 + 4999 ))); do echo "INSERT INTO one_row VALUES ($i, $i);"; done | q -v ON_ERROR_STOP=1 >/dev/null
  local res t0 t1
  res=$(caught_up "$slot" "PERFORM turso_start('bench');")
  read -r t0 t1 _ <<<"$res"
  backlog_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  backlog_rate=$(python3 -c "print(f'{5000 / ($t1 - $t0):.0f}')")
  [ "$(turso_query "SELECT count(*), sum(v) FROM one_row" | tail -1)" = "$(q -c "SELECT count(*) || E'\t' || sum(v) FROM one_row")" ] || { equal=no; echo "MISMATCH one_row ($2)"; }
}
# sqlapi FIRST LABEL: the SQL API on the same backlog, for comparison: 5,000 one-row transactions
# into sqlapi_row (ids FIRST on; not in the publication, replicated by turso_replicate_table through
# its Turso database's slot), then ONE turso_replicate_table call, timed by the server; sets
# sqlapi_s and sqlapi_rate and checks sqlapi_row in Turso.
sqlapi() {
  for i in $(seq "$1" $(( $1 + 4999 ))); do echo "INSERT INTO sqlapi_row VALUES ($i, $i);"; done | q -v ON_ERROR_STOP=1 >/dev/null
  local out n ms
  out=$(printf '\\timing on\nSELECT turso_replicate_table(%s);\n' "'sqlapi_row'" | q -v ON_ERROR_STOP=1)
  n=$(head -1 <<<"$out")
  ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")
  [ "$n" = 5000 ] && [ -n "$ms" ] || { echo "measurement failed: turso_replicate_table ($2): $out" >&2; exit 2; }
  sqlapi_s=$(python3 -c "print(f'{$ms / 1000:.2f}')")
  sqlapi_rate=$(python3 -c "print(f'{5000 / ($ms / 1000):.0f}')")
  [ "$(turso_query "SELECT count(*), sum(v) FROM sqlapi_row" | tail -1)" = "$(q -c "SELECT count(*) || E'\t' || sum(v) FROM sqlapi_row")" ] || { equal=no; echo "MISMATCH sqlapi_row ($2)"; }
}
q -c "CREATE TABLE one_row(id int PRIMARY KEY, v int)" -c "ALTER PUBLICATION bench ADD TABLE one_row" >/dev/null
q -c "CREATE TABLE sqlapi_row(id int PRIMARY KEY, v int)" -c "SELECT turso_replicate_table('sqlapi_row')" >/dev/null
backlog 1 direct
direct_s=$backlog_s direct_rate=$backlog_rate
sqlapi 1 direct
sqlapi_direct_s=$sqlapi_s sqlapi_direct_rate=$sqlapi_rate
# The same with every request to sqld delayed by 25 ms (a Turso region away).
proxy_port=$(free_port)
python3 "$ROOT/bench/delay_proxy.py" "$proxy_port" "$SQLD_PORT" 25 &
proxy_pid=$!
STOP_CMDS+=("kill $proxy_pid 2>/dev/null || true")
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break; sleep 0.1; done
q -c "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS \$\$ SELECT 'http://127.0.0.1:$proxy_port/' \$\$" >/dev/null
backlog 5001 delayed
delayed_s=$backlog_s delayed_rate=$backlog_rate
sqlapi 5001 delayed
backlog_s=$direct_s backlog_rate=$direct_rate
echo "pgbench -s $SCALE, -c 4 -j 2 -T $SECS alone: $alone tps"
echo "pgbench -s $SCALE, -c 4 -j 2 -T $SECS while the worker replicates: $xacts transactions, $tps tps (and $probes lag probe rows)"
echo "initial copy (turso_start): $copy_s s"
echo "in Turso when pgbench stopped: $during of the $(( xacts + probes )) transactions (pgbench's and the probes'); after the catch-up: $total"
echo "pgturso's rate while pgbench ran: $rate transactions/s"
echo "catch-up after pgbench stopped: $catchup s"
echo "$lag_out"
echo "lag over time: $results"
echo "test_decoding decoding the same WAL ($td_changes rows of output): $td_s s (pgbench ran $SECS s)"
echo "5,000 one-row transactions (a backlog): $backlog_s s, $backlog_rate transactions/s"
echo "the same, every request to sqld delayed 25 ms: $delayed_s s, $delayed_rate transactions/s"
echo "the SQL API on the same backlog, one turso_replicate_table call: $sqlapi_direct_s s, $sqlapi_direct_rate transactions/s; delayed 25 ms: $sqlapi_s s, $sqlapi_rate transactions/s"
echo "tables equal: $equal"
met() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo met; else echo missed; fi; }
echo "target: catch-up <= 1 s: $(met "$catchup <= 1")"
echo "target: replication keeps pace (>= 95% of the transactions in Turso before pgbench stops): $(met "$during >= 0.95 * ($xacts + $probes)")"
echo "target: end-to-end lag p99 <= 1 s: $(met "$p99 <= 1000")"
echo "target: 5,000 one-row transactions >= 20,000 transactions/s: $(met "$backlog_rate >= 20000")"
echo "target: the same delayed 25 ms >= 2,000 transactions/s: $(met "$delayed_rate >= 2000")"
[ "$equal" = yes ] || exit 1
