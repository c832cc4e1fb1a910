# Shared shell helpers (sourced): a throwaway PostgreSQL cluster and a sqld with JWT auth, both on
# free loopback ports, stopped by `stop_all` (install it with `trap stop_all EXIT`).
# shellcheck shell=bash

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# The PostgreSQL major the scripts build for and run against (scripts/pg.sh installs it).
export PG_MAJOR=${PG_MAJOR:-${PGTURSO_PG:-15}}
export PATH="/usr/lib/postgresql/15/bin:$HOME/.cargo/bin:$PATH"

# only_pg_option USAGE ARGS...: for a script whose only option is `--pg N` (sets PG_MAJOR).
only_pg_option() {
  local usage=$1; shift
  case ${1:-} in
    --pg) export PG_MAJOR=${2:?--pg needs a major version} ;;
    "") ;;
    *) echo "usage: $usage" >&2; exit 2 ;;
  esac
}

# use_pg: puts PostgreSQL $PG_MAJOR first on PATH and points pgrx and cargo at it (sets PG_CONFIG,
# PG_FEATURES and, for another major than 15, a target directory of its own).
use_pg() {
  case $PG_MAJOR in 15|16|17|18) ;; *) echo "unsupported PostgreSQL major: $PG_MAJOR (15, 16, 17 or 18)" >&2; exit 2 ;; esac
  PG_CONFIG=$(bash "$ROOT/scripts/pg.sh" "$PG_MAJOR")
  export PATH="$(dirname "$PG_CONFIG"):$PATH"
  export PGRX_PG_CONFIG_PATH=$PG_CONFIG PG_CONFIG
  PG_FEATURES="--no-default-features --features pg$PG_MAJOR"
  if [ "$PG_MAJOR" != 15 ]; then export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/pg$PG_MAJOR; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs a command as the postgres user when we are root (initdb and pg_ctl refuse root).
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_pg DIR: initdb + start with wal_level=logical, pgturso allowed as output plugin, pg_cron.
# Sets PGPORT, PGHOST, PGUSER and PGDATA_DIR.
start_pg() {
  local dir=$1
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; chmod 755 "$(dirname "$dir")"; fi
  PGPORT=$(free_port); PGDATA_DIR="$dir/data"
  as_pg initdb -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  cat >> "$PGDATA_DIR/postgresql.auto.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_worker_processes = 32
CONF
  if [ -f "$(pg_config --pkglibdir)/pg_cron.so" ]; then
    printf "shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\ncron.use_background_workers = on\n" >> "$PGDATA_DIR/postgresql.auto.conf"
  fi
  # PostgreSQL 15.19 and later load only the output plugins this setting lists. (grep reads all of
  # the output: with -q it would stop at the match, and postgres, still writing, would die of
  # SIGPIPE, which pipefail turns into "no such setting" now and then.)
  if postgres --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
    echo "output_plugin_libraries = 'pgoutput, test_decoding, pgturso'" >> "$PGDATA_DIR/postgresql.auto.conf"
  fi
  env -u RUST_BACKTRACE bash -c "$(declare -f as_pg); as_pg pg_ctl -D '$PGDATA_DIR' -l '$dir/server.log' -w -t 60 start" >/dev/null
  export PGHOST=127.0.0.1 PGPORT PGUSER=postgres
  STOP_CMDS+=("as_pg pg_ctl -D '$PGDATA_DIR' stop -m fast >/dev/null 2>&1 || true")
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# start_sqld DIR: sqld with an Ed25519 JWT key; sets SQLD_PORT, SQLD_URL, TURSO_TOKEN and SQLD_PID.
# SQLD_WRAPPER (optional) is a command sqld runs under (bench/statements.sh: valgrind).
start_sqld() {
  local dir=$1
  rm -rf "$dir"; mkdir -p "$dir"
  openssl genpkey -algorithm ed25519 -out "$dir/priv.pem" 2>/dev/null
  openssl pkey -in "$dir/priv.pem" -pubout -out "$dir/pub.pem"
  local header payload
  header=$(printf '{"alg":"EdDSA","typ":"JWT"}' | b64url)
  payload=$(printf '{"a":"rw","iat":%s}' "$(date +%s)" | b64url)
  printf '%s.%s' "$header" "$payload" > "$dir/input"
  TURSO_TOKEN="$header.$payload.$(openssl pkeyutl -sign -inkey "$dir/priv.pem" -rawin -in "$dir/input" | b64url)"
  SQLD_PORT=$(free_port)
  # shellcheck disable=SC2086 # SQLD_WRAPPER is a command with arguments
  (cd "$dir" && exec ${SQLD_WRAPPER:-} "$ROOT/tools/sqld/sqld" --http-listen-addr "127.0.0.1:$SQLD_PORT" --db-path "$dir/data.sqld" \
      --no-welcome --auth-jwt-key-file "$dir/pub.pem" >"$dir/sqld.log" 2>&1) &
  local pid=$!
  STOP_CMDS+=("kill $pid 2>/dev/null || true")
  SQLD_PID=$pid
  for _ in $(seq "${SQLD_START_TRIES:-100}"); do
    (echo > "/dev/tcp/127.0.0.1/$SQLD_PORT") 2>/dev/null && break
    sleep 0.1
  done
  SQLD_URL="http://127.0.0.1:$SQLD_PORT/"
  export SQLD_PORT SQLD_URL TURSO_TOKEN SQLD_PID
}

# turso_query SQL: runs one statement on sqld and prints the rows, one per line, tab-separated.
turso_query() {
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"baton":None,"requests":[{"type":"execute","stmt":{"sql":sys.argv[1]}},{"type":"close"}]}))' "$1")
  curl -s -H "Authorization: Bearer $TURSO_TOKEN" -H 'Content-Type: application/json' -d "$body" "${SQLD_URL}v2/pipeline" |
    python3 -c '
import json,sys
r=json.load(sys.stdin)["results"][0]
if r["type"]!="ok": sys.exit("turso error: "+r["error"]["message"])
res=r["response"]["result"]
print("\t".join(c["name"] for c in res["cols"]))
for row in res["rows"]: print("\t".join("NULL" if v["type"]=="null" else str(v.get("value", v.get("base64"))) for v in row))'
}

STOP_CMDS=()
stop_all() { local c; for c in "${STOP_CMDS[@]}"; do eval "$c"; done; }
