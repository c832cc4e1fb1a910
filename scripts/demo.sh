#!/usr/bin/env bash
# Installs what is missing, then runs the README flow end to end on a throwaway PostgreSQL cluster
# and a local sqld (with JWT auth), and prints what landed in Turso.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/lib.sh
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
