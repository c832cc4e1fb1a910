#!/usr/bin/env bash
# Installs what is missing, then runs every check: format, lints, unit tests and the end-to-end
# suites (each starts its own PostgreSQL cluster and sqld servers on loopback).
# Usage: scripts/test.sh [--pg 15|16|17|18] [--suites "core stream types"]
#   --pg N       the PostgreSQL major to build for and test against (default 15)
#   --suites S   only these end-to-end suites (tests/<name>.rs), with the unit tests
set -euo pipefail
cd "$(dirname "$0")/.."
SUITES=""
while [ $# -gt 0 ]; do
  case $1 in
    --pg) PG_MAJOR=${2:?--pg needs a major version}; shift 2 ;;
    --suites) SUITES=${2:?--suites needs names}; shift 2 ;;
    *) echo "usage: scripts/test.sh [--pg 15|16|17|18] [--suites \"core stream types\"]" >&2; exit 2 ;;
  esac
done
export PG_MAJOR=${PG_MAJOR:-${PGTURSO_PG:-15}}
bash scripts/setup.sh --pg "$PG_MAJOR"
source scripts/lib.sh
use_pg
unset RUST_BACKTRACE
echo "==> PostgreSQL $PG_MAJOR ($(postgres --version))"
echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
# shellcheck disable=SC2086 # PG_FEATURES holds several arguments
cargo clippy $PG_FEATURES --all-targets -- -D warnings
targets=()
skips=()
if [ ! -f "$(pg_config --pkglibdir)/pg_cron.so" ]; then
  # No registry this machine reaches serves pg_cron for every major (16: none, see scripts/pg.sh).
  # The scheduler's tests cannot run without it: say so, never count them as passed.
  for t in verbatim_example_schedules_and_the_jobs_replicate_by_themselves; do
    echo "==> NOT RUN on PostgreSQL $PG_MAJOR (no pg_cron here): $t"
    skips+=(--skip "$t")
  done
fi
if [ -n "$SUITES" ]; then
  targets+=(--lib)
  for s in $SUITES; do targets+=(--test "$s"); done
fi
echo "==> cargo test (unit + end-to-end${SUITES:+: $SUITES})"
# shellcheck disable=SC2086
cargo test $PG_FEATURES --no-fail-fast "${targets[@]}" -- --test-threads=2 "${skips[@]}"
