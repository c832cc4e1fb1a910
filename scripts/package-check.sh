#!/usr/bin/env bash
# Run by `scripts/package.sh --pg N --check` (PG_MAJOR and PG_CONFIG set): installs the tarball that
# scripts/package.sh built into a clean copy of that PostgreSQL (no pgturso in it), with nothing but
# the tarball's install.sh, then runs the README's quick flow on a throwaway cluster of that copy
# and a local sqld, and checks what arrived in Turso.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
tarball="$ROOT/dist/pgturso-$VERSION-pg$PG_MAJOR-linux-x86_64.tar.gz"
[ -f "$tarball" ] || { echo "no $tarball: run scripts/package.sh --pg $PG_MAJOR first" >&2; exit 1; }
export WORK="$ROOT/.tmp/package-check-$PG_MAJOR"
rm -rf "$WORK"; mkdir -p "$WORK/pg-copy"
trap stop_all EXIT

# 1. a clean copy of the PostgreSQL installation (PostgreSQL finds its files relative to its binaries)
bindir=$("$PG_CONFIG" --bindir)
case $bindir in
  /usr/lib/postgresql/*)   # Debian's and PGDG's layout
    mkdir -p "$WORK/pg-copy/usr/lib/postgresql" "$WORK/pg-copy/usr/share/postgresql"
    cp -a "/usr/lib/postgresql/$PG_MAJOR" "$WORK/pg-copy/usr/lib/postgresql/"
    cp -a "/usr/share/postgresql/$PG_MAJOR" "$WORK/pg-copy/usr/share/postgresql/"
    copy_bindir="$WORK/pg-copy$bindir" ;;
  "$ROOT/tools/pg/$PG_MAJOR"/*)   # a tree of scripts/pg.sh
    cp -a "$ROOT/tools/pg/$PG_MAJOR" "$WORK/pg-copy/tree"
    copy_bindir="$WORK/pg-copy/tree${bindir#"$ROOT/tools/pg/$PG_MAJOR"}" ;;
  *) echo "do not know how to copy the PostgreSQL installation of $PG_CONFIG" >&2; exit 1 ;;
esac
copy_config="$copy_bindir/pg_config"
rm -f "$("$copy_config" --pkglibdir)"/pgturso.so "$("$copy_config" --sharedir)"/extension/pgturso*
chmod -R a+rX "$WORK"

# 2. install from the tarball alone
mkdir -p "$WORK/unpacked"
tar -C "$WORK/unpacked" -xzf "$tarball"
"$WORK/unpacked/pgturso-$VERSION-pg$PG_MAJOR-linux-x86_64/install.sh" "$copy_config"

# 3. the README's quick flow on that copy
export PATH="$copy_bindir:$PATH"
start_pg "$WORK/pg"
start_sqld "$WORK/sqld"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -v url="$SQLD_URL" -v token="$TURSO_TOKEN" <<'SQL'
SELECT 'init' FROM pg_create_logical_replication_slot('pgturso_slot', 'pgturso');
CREATE TABLE t(id int primary key, v text, v1 text, v2 int);
INSERT INTO t VALUES (45, 'hey', 'turso', 14);
INSERT INTO t VALUES (46, 'hello', 'postgres', 15);
SELECT data FROM pg_logical_slot_get_changes('pgturso_slot', NULL, NULL, 'url', :'url', 'auth', :'token');
CREATE EXTENSION pgturso;
SELECT pg_backend_pid() AS pid \gset
\setenv BACKEND_PID :pid
\! grep -o '/.*pgturso.so' "/proc/$BACKEND_PID/maps" | head -1 > "$WORK/loaded-from"
SQL
got=$(turso_query 'SELECT id, v, v1, v2 FROM t ORDER BY id' | tail -n +2 | tr '\t\n' ', ')
want="45,hey,turso,14 46,hello,postgres,15 "
loaded=$(psql -X -At -d postgres -c "SELECT extversion FROM pg_extension WHERE extname = 'pgturso'")
from=$(cat "$WORK/loaded-from")
echo "Turso's t: $got; extension pgturso $loaded; the backend's library: $from"
case $from in
  "$WORK/pg-copy/"*) ;;
  *) echo "package check FAILED: the library did not come from the clean copy" >&2; exit 1 ;;
esac
[ "$got" = "$want" ] || { echo "package check FAILED: Turso has '$got', expected '$want'" >&2; exit 1; }
[ "$loaded" = "$VERSION" ] || { echo "package check FAILED: CREATE EXTENSION gave '$loaded'" >&2; exit 1; }
echo "package check passed: PostgreSQL $PG_MAJOR ($(postgres --version)), installed from $(basename "$tarball")"
