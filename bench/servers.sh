# Sourced by bench/worker.sh and bench/schema.sh, from the repository root, with BENCH_NAME set:
# builds and installs a release build (unless PGTURSO_BENCH_SKIP_SETUP=1), puts
# PGTURSO_BENCH_PGBIN first on PATH when given, starts a throwaway PostgreSQL and sqld under
# .tmp/bench-$BENCH_NAME (stopped on exit) and defines q, psql on that cluster's postgres database,
# with_pgturso and caught_up (below).
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
# with_pgturso: CREATE EXTENSION pgturso, with turso_url() and turso_token() (the token in a table
# only superusers read) for the sqld started here.
with_pgturso() {
  q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE EXTENSION pgturso;
CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS \$\$ SELECT '$SQLD_URL' \$\$;
CREATE TABLE turso_secret(token text NOT NULL);
INSERT INTO turso_secret VALUES ('$TURSO_TOKEN');
CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS \$\$ SELECT token FROM public.turso_secret \$\$;
REVOKE ALL ON FUNCTION turso_token() FROM PUBLIC;
SQL
}

# caught_up SLOT START: in one session, runs the plpgsql statement START and commits it (turso_start's
# worker waits for its caller's transaction to end), then waits in 2 ms steps until slot SLOT has
# confirmed the WAL flushed before START; prints the epoch times of the start and of that moment
# and the LSN. Exits 2 after 600 s.
caught_up() {
  q -v ON_ERROR_STOP=1 -c "DO \$\$
DECLARE
    t0 float8 := extract(epoch FROM clock_timestamp());
    lsn pg_lsn := pg_current_wal_flush_lsn();
BEGIN
    $2
    COMMIT;
    WHILE NOT EXISTS (SELECT 1 FROM pg_replication_slots
                       WHERE slot_name = '$1' AND confirmed_flush_lsn >= lsn) LOOP
        IF extract(epoch FROM clock_timestamp()) - t0 > 600 THEN
            RAISE EXCEPTION 'not caught up within 600 s';
        END IF;
        PERFORM pg_sleep(0.002);
        COMMIT;
    END LOOP;
    PERFORM set_config('bench.caught_up', t0 || ' ' || extract(epoch FROM clock_timestamp()) || ' ' || lsn, false);
END
\$\$" -c "SELECT current_setting('bench.caught_up')" ||
    { echo "measurement failed: the slot did not confirm the WAL" >&2; exit 2; }
}
