#!/usr/bin/env bash
# Instructions sqld executes for forms of pgturso's JSON-rows statement, counted by valgrind's
# callgrind (instruction counts do not swing with machine noise as times do). Starts a throwaway
# sqld under callgrind on loopback under .tmp/statements, runs bench/statements.py, stops sqld.
# Needs tools/sqld/sqld (bash scripts/setup.sh); installs valgrind if it is missing.
# Options (environment): PGTURSO_STMT_ROWS (rows per run, default 20000).
# Exit status: 0 = ran and verified, 2 = error.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x tools/sqld/sqld ]; then
  echo "tools/sqld/sqld is missing: run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
if ! command -v callgrind_control >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "==> installing valgrind" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
fi
source scripts/lib.sh
unset RUST_BACKTRACE
trap stop_all EXIT
dir="$ROOT/.tmp/statements"
rm -rf "$dir"
SQLD_WRAPPER="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$dir/callgrind.out" \
  SQLD_START_TRIES=600 start_sqld "$dir/sqld"
rc=0
CG_OUT="$dir/callgrind.out" python3 "$ROOT/bench/statements.py" || rc=$?
exit "$rc"
