#!/usr/bin/env bash
# Installs what is missing, then runs every check: format, lints, unit tests and the end-to-end
# suites (each starts its own PostgreSQL cluster and sqld servers on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="/usr/lib/postgresql/15/bin:$HOME/.cargo/bin:$PATH"
unset RUST_BACKTRACE
echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test (unit + end-to-end)"
cargo test -- --test-threads=2
