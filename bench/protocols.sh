#!/usr/bin/env bash
# Hrana protocol variants measured directly against sqld (no PostgreSQL involved): placeholders
# vs JSON rows, v2 JSON vs v3 JSON vs v3 protobuf, SQL text vs store_sql + sql_id, one request vs a
# stream of requests. Starts a throwaway sqld (JWT auth) on loopback under .tmp/protocols, runs
# bench/protocols.py, stops sqld. Needs tools/sqld/sqld (bash scripts/setup.sh).
# Options (environment): PGTURSO_PROTO_ROWS (rows per transaction, default 100000),
# PGTURSO_PROTO_REPEAT (runs of every variant, interleaved, default 5; medians are reported).
# Exit status: 0 = ran and verified, 2 = error.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x tools/sqld/sqld ]; then
  echo "tools/sqld/sqld is missing: run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
source scripts/lib.sh
unset RUST_BACKTRACE
trap stop_all EXIT
export PGTURSO_PROTO_ROWS=${PGTURSO_PROTO_ROWS:-100000}
export PGTURSO_PROTO_REPEAT=${PGTURSO_PROTO_REPEAT:-5}
start_sqld "$ROOT/.tmp/protocols/sqld"
rc=0
SQLD_BIN="$ROOT/tools/sqld/sqld" python3 "$ROOT/bench/protocols.py" || rc=$?
exit "$rc"
