#!/usr/bin/env bash
# Installs what is missing, then runs the README flow end to end on a throwaway PostgreSQL cluster
# and a local sqld (with JWT auth), and prints what landed in Turso.
# Usage: scripts/demo.sh [--pg 15|16|17|18] (a release build into that PostgreSQL; default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
only_pg_option "scripts/demo.sh [--pg 15|16|17|18]" "$@"
bash scripts/setup.sh --release
use_pg
trap stop_all EXIT
WORK="$ROOT/.tmp/demo"
mkdir -p "$WORK"
start_pg "$WORK/pg"
start_sqld "$WORK/sqld"
echo "PostgreSQL on 127.0.0.1:$PGPORT, sqld on $SQLD_URL"
echo
echo "-- the README flow:"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -e <<SQL
SELECT 'init' FROM pg_create_logical_replication_slot('pgturso_slot', 'pgturso');
DROP TABLE IF EXISTS t;
CREATE TABLE t(id int primary key, v text, v1 text, v2 int);
INSERT INTO t VALUES (45, 'hey', 'turso', 14);
INSERT INTO t VALUES (46, 'hello', 'postgres', 15);
SQL
echo "SELECT data FROM pg_logical_slot_get_changes('pgturso_slot', NULL, NULL, 'url', '$SQLD_URL', 'auth', '<token>');"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -v url="$SQLD_URL" -v token="$TURSO_TOKEN" <<'SQL'
SELECT data FROM pg_logical_slot_get_changes('pgturso_slot', NULL, NULL, 'url', :'url', 'auth', :'token');
SQL
echo
echo "-- table t in Turso ($SQLD_URL):"
turso_query 'SELECT id, v, v1, v2 FROM t ORDER BY id'

echo
echo "-- the SQL API: schedule a materialized view every 5 seconds with pg_cron"
cat <<SHOW
CREATE TABLE IF NOT EXISTS t(id int PRIMARY KEY, v int, v1 text, v2 text);
CREATE MATERIALIZED VIEW testview AS SELECT id, v2 FROM t WHERE id <= 46;
CREATE OR REPLACE FUNCTION turso_token() RETURNS text LANGUAGE SQL AS \$\$ SELECT '<token>'; \$\$;
CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE SQL AS \$\$ SELECT '$SQLD_URL'; \$\$;
CREATE EXTENSION pgturso;
SELECT turso_schedule_mv_replication('testview', '5 seconds');
SHOW
psql -X -q -v ON_ERROR_STOP=1 -d postgres -v url="$SQLD_URL" -v token="$TURSO_TOKEN" <<'SQL'
CREATE TABLE IF NOT EXISTS t(id int PRIMARY KEY, v int, v1 text, v2 text);
CREATE MATERIALIZED VIEW testview AS SELECT id, v2 FROM t WHERE id <= 46;
SELECT format('CREATE OR REPLACE FUNCTION turso_token() RETURNS text LANGUAGE SQL AS $f$ SELECT %L; $f$', :'token') \gexec
SELECT format('CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE SQL AS $f$ SELECT %L; $f$', :'url') \gexec
CREATE EXTENSION pgturso;
SELECT turso_schedule_mv_replication('testview', '5 seconds') AS cron_job_id;
SQL
echo "-- testview in Turso right after scheduling (initial copy):"
turso_query 'SELECT id, v2 FROM testview ORDER BY id'
echo
echo "-- now change the source table and let the job run by itself:"
echo "INSERT INTO t VALUES (1, 'one', 'new', 1); UPDATE t SET v2 = 99 WHERE id = 45;"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "INSERT INTO t VALUES (1, 'one', 'new', 1); UPDATE t SET v2 = 99 WHERE id = 45;"
deadline=$((SECONDS + 90))
until turso_query 'SELECT count(*) FROM testview WHERE id = 1' | tail -1 | grep -qx 1; do
  if [ $SECONDS -ge $deadline ]; then echo "the scheduled job did not run within 90 s" >&2; exit 1; fi
  sleep 2
done
echo "-- testview in Turso, replicated by the pg_cron job (no manual call):"
turso_query 'SELECT id, v2 FROM testview ORDER BY id'
echo
echo "-- turso_replication_status:"
psql -X -d postgres -c "SELECT name, kind, schedule, active, last_status, last_rows, last_run FROM turso_replication_status"

echo
echo "-- continuous replication: a publication, replicated by a background worker"
cat <<SHOW
CREATE TABLE accounts(id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 1000) g;
CREATE PUBLICATION app FOR TABLE accounts;
SELECT turso_start('app');
SHOW
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE TABLE accounts(id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 1000) g;
CREATE PUBLICATION app FOR TABLE accounts;
SELECT turso_start('app') IS NOT NULL AS worker_started;
SQL
echo "-- 200 transfers, each its own transaction, with nothing else running:"
for i in $(seq 1 200); do
  echo "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = $(( i % 1000 + 1 )); UPDATE accounts SET balance = balance + 1 WHERE id = $(( (i * 7) % 1000 + 1 )); COMMIT;"
done | psql -X -q -v ON_ERROR_STOP=1 -d postgres
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "UPDATE accounts SET balance = 0 WHERE id = 1000"
deadline=$((SECONDS + 60))
until turso_query 'SELECT balance FROM accounts WHERE id = 1000' | tail -1 | grep -qx 0; do
  if [ $SECONDS -ge $deadline ]; then echo "the worker did not replicate within 60 s" >&2; exit 1; fi
  sleep 0.2
done
echo "-- accounts in Turso (sum of balances, rows), replicated by the worker:"
turso_query 'SELECT sum(balance), count(*) FROM accounts'
echo "-- the same in PostgreSQL:"
psql -X -At -d postgres -c "SELECT sum(balance) || E'\t' || count(*) FROM accounts"
psql -X -d postgres -c "SELECT name, kind, active, last_status, last_rows AS transactions, lag_bytes FROM turso_replication_status WHERE kind = 'publication'"
psql -X -q -d postgres -c "SELECT turso_stop('app', drop => true)" >/dev/null
