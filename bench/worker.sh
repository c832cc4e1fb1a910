#!/usr/bin/env bash
# Continuous replication benchmark (issue 15): pgbench writes while pgturso's background worker
# replicates the four pgbench tables (a publication started with turso_start) into sqld on
# loopback. Prints pgbench's rate alone and under replication, the rate at which Turso received the transactions, the catch-up
# time after pgbench stops, and whether the tables are equal; then the targets, met or missed.
# Builds and installs a release build first (skip with PGTURSO_BENCH_SKIP_SETUP=1).
# Options (environment): PGTURSO_BENCH_PGBENCH_SCALE (pgbench -s, default 10),
# PGTURSO_BENCH_SECONDS (pgbench -T, default 10), PGTURSO_BENCH_PGBIN (a PostgreSQL bin directory
# to use instead of the system one).
# Exit status: 0 = ran and the tables are equal (targets are only reported), 1 = mismatch, 2 = error.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${PGTURSO_BENCH_PGBENCH_SCALE:-10}
SECS=${PGTURSO_BENCH_SECONDS:-10}
BENCH_NAME=worker
source bench/servers.sh
q <<SQL
CREATE EXTENSION pgturso;
CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS \$\$ SELECT '$SQLD_URL' \$\$;
CREATE TABLE turso_secret(token text NOT NULL);
INSERT INTO turso_secret VALUES ('$TURSO_TOKEN');
CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS \$\$ SELECT token FROM public.turso_secret \$\$;
REVOKE ALL ON FUNCTION turso_token() FROM PUBLIC;
SQL
pgbench -i -q -s "$SCALE" postgres 2>/dev/null
q <<SQL >/dev/null
ALTER TABLE pgbench_history REPLICA IDENTITY FULL;
CREATE PUBLICATION bench FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
SQL
# pgbench alone first, side by side with the run under replication.
alone=$(pgbench -c 4 -j 2 -T "$SECS" -n postgres 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
t0=$(date +%s.%N)
q -c "SELECT turso_start('bench')" >/dev/null
copy_s=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
slot=$(q -c "SELECT slot FROM pgturso.publications WHERE pubname = 'bench'")
applied() { q -c "SELECT txns FROM pgturso.publications WHERE pubname = 'bench'"; }
before=$(applied)
out=$(pgbench -c 4 -j 2 -T "$SECS" -n postgres 2>&1)
end_lsn=$(q -c "SELECT pg_current_wal_flush_lsn()")
t_end=$(date +%s.%N)
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
during=$(( $(applied) - before ))
# Caught up: the slot has confirmed everything pgbench wrote.
deadline=$(( $(date +%s) + 600 ))
until [ "$(q -c "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = '$slot'")" = t ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "not caught up within 600 s"; exit 2; }
  sleep 0.05
done
catchup=$(python3 -c "import time; print(f'{time.time() - $t_end:.2f}')")
total=$(( $(applied) - before ))
# Equal: counts and sums of every table.
equal=yes
for check in "count(*), sum(abalance) FROM pgbench_accounts" "count(*), sum(bbalance) FROM pgbench_branches" \
             "count(*), sum(tbalance) FROM pgbench_tellers" "count(*), sum(delta) FROM pgbench_history"; do
  pg=$(q -c "SELECT $check" | tr '|' '\t')
  turso=$(turso_query "SELECT $check" | tail -1)
  if [ "$pg" != "$turso" ]; then equal=no; echo "MISMATCH $check: PostgreSQL $pg, Turso $turso"; fi
done
rate=$(python3 -c "print(f'{$during / $SECS:.0f}')")
# backlog FIRST LABEL: with the replication stopped, writes 5,000 one-row transactions (ids FIRST
# on), then times them from the moment turso_start resumes it until the slot has confirmed the
# last one; sets backlog_s and backlog_rate and checks one_row in Turso.
backlog() {
  q -c "SELECT turso_stop('bench')" >/dev/null
  for i in $(seq "$1" $(( $1 + 4999 ))); do echo "INSERT INTO one_row VALUES ($i, $i);"; done | q >/dev/null
  local lsn t
  lsn=$(q -c "SELECT pg_current_wal_flush_lsn()")
  t=$(date +%s.%N)
  q -c "SELECT turso_start('bench')" >/dev/null
  until [ "$(q -c "SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = '$slot'")" = t ]; do
    sleep 0.01
  done
  backlog_s=$(python3 -c "import time; print(f'{time.time() - $t:.2f}')")
  backlog_rate=$(python3 -c "print(f'{5000 / $backlog_s:.0f}')")
  [ "$(turso_query "SELECT count(*), sum(v) FROM one_row" | tail -1)" = "$(q -c "SELECT count(*) || E'\t' || sum(v) FROM one_row")" ] || { equal=no; echo "MISMATCH one_row ($2)"; }
}
q -c "CREATE TABLE one_row(id int PRIMARY KEY, v int)" -c "ALTER PUBLICATION bench ADD TABLE one_row" >/dev/null
backlog 1 direct
direct_s=$backlog_s direct_rate=$backlog_rate
# The same with every request to sqld delayed by 25 ms (a Turso region away).
proxy_port=$(free_port)
python3 "$ROOT/bench/delay_proxy.py" "$proxy_port" "$SQLD_PORT" 25 &
proxy_pid=$!
STOP_CMDS+=("kill $proxy_pid 2>/dev/null || true")
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break; sleep 0.1; done
q -c "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS \$\$ SELECT 'http://127.0.0.1:$proxy_port/' \$\$" >/dev/null
backlog 5001 delayed
delayed_s=$backlog_s delayed_rate=$backlog_rate
backlog_s=$direct_s backlog_rate=$direct_rate
echo "pgbench -s $SCALE, -c 4 -j 2 -T $SECS alone: $alone tps"
echo "pgbench -s $SCALE, -c 4 -j 2 -T $SECS while the worker replicates: $xacts transactions, $tps tps"
echo "initial copy (turso_start): $copy_s s"
echo "in Turso when pgbench stopped: $during of its transactions; after the catch-up: $total"
echo "pgturso's rate while pgbench ran: $rate transactions/s"
echo "catch-up after pgbench stopped: $catchup s"
echo "5,000 one-row transactions (a backlog): $backlog_s s, $backlog_rate transactions/s"
echo "the same, every request to sqld delayed 25 ms: $delayed_s s, $delayed_rate transactions/s"
echo "tables equal: $equal"
met() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo met; else echo missed; fi; }
echo "target: catch-up <= 1 s: $(met "$catchup <= 1")"
echo "target: replication keeps pace (>= 95% of pgbench's transactions in Turso before it stops): $(met "$during >= 0.95 * $xacts")"
echo "target: 5,000 one-row transactions >= 20,000 transactions/s: $(met "$backlog_rate >= 20000")"
echo "target: the same delayed 25 ms >= 2,000 transactions/s: $(met "$delayed_rate >= 2000")"
[ "$equal" = yes ] || exit 1
