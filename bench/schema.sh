#!/usr/bin/env bash
# Schema-change and table-shape benchmark (issue 16), through the output plugin
# (pg_logical_slot_get_changes) into sqld on loopback:
# - a table without key (REPLICA IDENTITY FULL) side by side with the same table keyed: one
#   transaction deleting and one updating 10% of its rows;
# - a table loaded without key, then ADD PRIMARY KEY: the next change rebuilds it in Turso;
# - ALTER COLUMN ... TYPE on the same table: PostgreSQL rewrites it, every row travels again;
# - a materialized view of as many rows (unique index): a full run, then one after 1% changed.
# Prints the figures and the targets, met or missed; checks every table against PostgreSQL.
# Builds and installs a release build first (skip with PGTURSO_BENCH_SKIP_SETUP=1).
# Options (environment): PGTURSO_BENCH_ROWS (rows of the keyed/keyless pair, default 200000),
# PGTURSO_BENCH_BIG_ROWS (rows of the rebuilt table, default 1000000), PGTURSO_BENCH_PGBIN.
# Exit status: 0 = ran and the tables are equal (targets are only reported), 1 = mismatch, 2 = error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${PGTURSO_BENCH_ROWS:-200000}
BIG=${PGTURSO_BENCH_BIG_ROWS:-1000000}
BENCH_NAME=schema
source bench/servers.sh
q -c "SELECT pg_create_logical_replication_slot('bench', 'pgturso')" >/dev/null
# sync: decodes everything so far into sqld; prints the seconds it took.
sync() {
  local t
  t=$(date +%s.%N)
  q -c "SELECT count(*) FROM pg_logical_slot_get_changes('bench', NULL, NULL, 'url', '$SQLD_URL', 'auth', '$TURSO_TOKEN')" >/dev/null
  python3 -c "import time; print(f'{time.time() - $t:.2f}')"
}
rate() { python3 -c "print(f'{$1 / $2:.0f}')"; }
equal=yes
# same TABLE COLUMNS: count and sums over COLUMNS (expressions both sides run alike) are equal.
same() {
  local pg turso
  pg=$(q -c "SELECT count(*), $2 FROM $1" | tr '|' '\t')
  turso=$(turso_query "SELECT count(*), $2 FROM $1" | tail -1)
  if [ "$pg" != "$turso" ]; then equal=no; echo "MISMATCH $1: PostgreSQL $pg, Turso $turso"; fi
}
q <<SQL >/dev/null
CREATE TABLE keyed(id int PRIMARY KEY, a int, b text, c float8);
CREATE TABLE keyless(id int, a int, b text, c float8);
ALTER TABLE keyless REPLICA IDENTITY FULL;
INSERT INTO keyed SELECT i, i % 1000, 'row ' || i, i / 8.0 FROM generate_series(1, $ROWS) i;
INSERT INTO keyless SELECT * FROM keyed;
SQL
sync >/dev/null
changed=$(( ROWS / 10 ))
# One table and one kind at a time, so each decode carries just that.
q -c "UPDATE keyed SET b = b || 'u' WHERE id % 10 = 1" >/dev/null
keyed_update=$(sync)
q -c "UPDATE keyless SET b = b || 'u' WHERE id % 10 = 1" >/dev/null
keyless_update=$(sync)
q -c "DELETE FROM keyed WHERE id % 10 = 2" >/dev/null
keyed_delete=$(sync)
q -c "DELETE FROM keyless WHERE id % 10 = 2" >/dev/null
keyless_delete=$(sync)
same keyed "sum(id), sum(a), sum(length(b)), sum(CAST(c * 8 AS INTEGER))"
same keyless "sum(id), sum(a), sum(length(b)), sum(CAST(c * 8 AS INTEGER))"
# Loaded without key, keyed afterwards (pgbench -i, pg_restore): the next change rebuilds.
q <<SQL >/dev/null
CREATE TABLE big(id int, v int, pad text);
INSERT INTO big SELECT i, i % 1000, 'pad ' || i FROM generate_series(1, $BIG) i;
SQL
load_s=$(sync)
q -c "ALTER TABLE big ADD PRIMARY KEY (id)" -c "UPDATE big SET v = -1 WHERE id = 1" >/dev/null
rebuild_s=$(sync)
same big "sum(id), sum(v), sum(length(pad))"
q -c "ALTER TABLE big ALTER v TYPE bigint" >/dev/null
rewrite_s=$(sync)
same big "sum(id), sum(v), sum(length(pad))"
# A materialized view of $BIG rows with a unique index: the first run copies it, the second
# sends the difference after 1% of the rows changed.
q <<SQL >/dev/null
CREATE EXTENSION pgturso;
CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS \$\$ SELECT '$SQLD_URL' \$\$;
CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS \$\$ SELECT '$TURSO_TOKEN' \$\$;
CREATE TABLE mvsrc(id int PRIMARY KEY, v int, pad text);
INSERT INTO mvsrc SELECT i, i % 1000, 'pad ' || i FROM generate_series(1, $BIG) i;
CREATE MATERIALIZED VIEW mvbig AS SELECT id, v, pad FROM mvsrc;
CREATE UNIQUE INDEX ON mvbig (id);
SQL
# mv_run: one turso_replicate_mv('mvbig'); prints the seconds it took.
mv_run() {
  local t
  t=$(date +%s.%N)
  q -c "SELECT turso_replicate_mv('mvbig')" >/dev/null
  python3 -c "import time; print(f'{time.time() - $t:.2f}')"
}
mv_first=$(mv_run)
q -c "UPDATE mvsrc SET v = -v WHERE id % 100 = 0" >/dev/null
mv_diff=$(mv_run)
same mvbig "sum(id), sum(v), sum(length(pad))"
echo "keyed and keyless tables of $ROWS rows; each change touches $changed rows in one transaction"
echo "UPDATE, keyed: $keyed_update s, $(rate "$changed" "$keyed_update") rows/s"
echo "UPDATE, keyless (REPLICA IDENTITY FULL): $keyless_update s, $(rate "$changed" "$keyless_update") rows/s"
echo "DELETE, keyed: $keyed_delete s, $(rate "$changed" "$keyed_delete") rows/s"
echo "DELETE, keyless (REPLICA IDENTITY FULL): $keyless_delete s, $(rate "$changed" "$keyless_delete") rows/s"
echo "$BIG rows loaded without key: $load_s s, $(rate "$BIG" "$load_s") rows/s"
echo "ADD PRIMARY KEY and one UPDATE (a rebuild in Turso): $rebuild_s s"
echo "ALTER COLUMN TYPE bigint (a rewrite: every row travels again): $rewrite_s s, $(rate "$BIG" "$rewrite_s") rows/s"
echo "materialized view of $BIG rows, first turso_replicate_mv: $mv_first s; after 1% of its rows changed: $mv_diff s"
echo "tables equal: $equal"
met() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo met; else echo missed; fi; }
echo "target: a keyless UPDATE of 10% within 3x the keyed one: $(met "$keyless_update <= 3 * $keyed_update")"
echo "target: a keyless DELETE of 10% within 3x the keyed one: $(met "$keyless_delete <= 3 * $keyed_delete")"
echo "target: the rebuild of $BIG rows <= 10 s: $(met "$rebuild_s <= 10")"
echo "target: the rewrite >= 50,000 rows/s: $(met "$BIG / $rewrite_s >= 50000")"
echo "target: the materialized view after a 1% change <= 10 s: $(met "$mv_diff <= 10")"
[ "$equal" = yes ] || exit 1
