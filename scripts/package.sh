#!/usr/bin/env bash
# Builds installable packages of a release build for one PostgreSQL major, under dist/:
#   pgturso-<version>-pg<N>-linux-x86_64.tar.gz   unpack anywhere, then `sudo ./install.sh` (installs
#                                                  into the PostgreSQL whose pg_config is on PATH, or
#                                                  the one given: ./install.sh /path/to/pg_config)
#   postgresql-<N>-pgturso_<version>_amd64.deb     for Debian/Ubuntu's layout (`apt install ./…deb`)
# Usage: scripts/package.sh [--pg 15|16|17|18] [--check]   (default 15; installs what the build needs first)
#   --check   instead of building: installs the tarball built before into a clean copy of that
#             PostgreSQL and runs the README's quick flow against it and a local sqld
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=0
while [ $# -gt 0 ]; do
  case $1 in
    --pg) export PG_MAJOR=${2:?--pg needs a major version}; shift 2 ;;
    --check) CHECK=1; shift ;;
    *) echo "usage: scripts/package.sh [--pg 15|16|17|18] [--check]" >&2; exit 2 ;;
  esac
done
source scripts/lib.sh
bash scripts/setup.sh --no-install
use_pg
if [ "$CHECK" = 1 ]; then exec bash scripts/package-check.sh; fi
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
OUT="$ROOT/target/package/pg$PG_MAJOR"
rm -rf "$OUT"
echo "==> cargo pgrx package (release) for PostgreSQL $PG_MAJOR" >&2
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$OUT" >/dev/null
so=$(find "$OUT" -name pgturso.so | head -1)
control=$(find "$OUT" -name pgturso.control | head -1)
[ -n "$so" ] && [ -n "$control" ] || { echo "cargo pgrx package produced no pgturso.so/control under $OUT" >&2; exit 1; }
extdir=$(dirname "$control")
mkdir -p "$ROOT/dist"

# 1. the tarball, with an installer that asks pg_config where things go
name="pgturso-$VERSION-pg$PG_MAJOR-linux-x86_64"
stage="$OUT/$name"
mkdir -p "$stage/lib" "$stage/extension"
install -m 755 "$so" "$stage/lib/"
install -m 644 "$extdir"/pgturso.control "$extdir"/pgturso--*.sql "$stage/extension/"
cat > "$stage/install.sh" <<INSTALL
#!/bin/sh
# Installs pgturso $VERSION into PostgreSQL $PG_MAJOR: the one whose pg_config is given, else the
# one on PATH. Then add pgturso to output_plugin_libraries where that setting exists (see README).
set -eu
cd "\$(dirname "\$0")"
PG_CONFIG=\${1:-pg_config}
major=\$("\$PG_CONFIG" --version | sed 's/^PostgreSQL \\([0-9]*\\).*/\\1/')
if [ "\$major" != "$PG_MAJOR" ]; then
  echo "this package is for PostgreSQL $PG_MAJOR, but \$PG_CONFIG is PostgreSQL \$major" >&2; exit 1
fi
libdir=\$("\$PG_CONFIG" --pkglibdir); sharedir=\$("\$PG_CONFIG" --sharedir)
install -d "\$libdir" "\$sharedir/extension"
install -m 755 lib/pgturso.so "\$libdir/"
install -m 644 extension/* "\$sharedir/extension/"
echo "pgturso $VERSION installed into \$libdir and \$sharedir/extension"
INSTALL
chmod 755 "$stage/install.sh"
tar -C "$OUT" -czf "$ROOT/dist/$name.tar.gz" "$name"
echo "$ROOT/dist/$name.tar.gz"

# 2. the .deb, in the layout of Debian's and PGDG's postgresql-$PG_MAJOR
deb="$OUT/deb"
mkdir -p "$deb/DEBIAN" "$deb/usr/lib/postgresql/$PG_MAJOR/lib" "$deb/usr/share/postgresql/$PG_MAJOR/extension"
install -m 755 "$so" "$deb/usr/lib/postgresql/$PG_MAJOR/lib/"
install -m 644 "$stage"/extension/* "$deb/usr/share/postgresql/$PG_MAJOR/extension/"
# The newest glibc symbol version the library uses is the oldest glibc it runs on.
glibc=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
cat > "$deb/DEBIAN/control" <<CONTROL
Package: postgresql-$PG_MAJOR-pgturso
Version: $VERSION
Architecture: amd64
Maintainer: pgturso developers <pgturso@localhost>
Depends: postgresql-$PG_MAJOR, libc6 (>= $glibc)
Section: database
Priority: optional
Description: replicate PostgreSQL row changes into Turso (libSQL)
 pgturso is a logical decoding output plugin and extension that sends each
 committed transaction to Turso over Hrana-over-HTTP, atomically and exactly once.
CONTROL
debfile="$ROOT/dist/postgresql-$PG_MAJOR-pgturso_${VERSION}_amd64.deb"
dpkg-deb --root-owner-group --build "$deb" "$debfile" >/dev/null
echo "$debfile"
