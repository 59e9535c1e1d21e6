#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for Herald integration tests / CI.
#
# Usage:  export HERALD_TEST_DATABASE_URL=$(infra/postgres/start.sh)
#
# Prints exactly one line on stdout (the connection URL); everything else goes
# to stderr so the command substitution above stays clean. Idempotent: if the
# server for this data dir is already running, it only re-checks readiness.
#
# Env:  HERALD_PG_DIR   data dir   (default /tmp/herald-pg)
#       HERALD_PG_PORT  TCP port   (default 54329, unusual to avoid clashing
#                                   with a system server on 5432)
# Stop with infra/postgres/stop.sh [--clean].
set -euo pipefail

PGDIR="${HERALD_PG_DIR:-/tmp/herald-pg}"
PORT="${HERALD_PG_PORT:-54329}"
PGUSER_NAME=herald
READY_TIMEOUT=30

log() { echo "[herald-pg] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Newest major version under /usr/lib/postgresql that has server binaries
# (Debian installs them there, not on PATH).
find_bindir() {
  # The glob sorts lexically ("9.6" > "17"), so pick by version sort instead.
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; fi
  done | sort -t/ -k5,5V | tail -n1
}

# Root may install packages directly; anyone else needs sudo.
as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

BINDIR=$(find_bindir)
if [[ -z "$BINDIR" ]]; then
  log "PostgreSQL server binaries not found; installing Debian 'postgresql' package..."
  # Send apt's chatter to stderr: stdout is reserved for the URL.
  as_root apt-get update >&2
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends postgresql >&2
  BINDIR=$(find_bindir)
  [[ -n "$BINDIR" ]] || die "postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
fi

# initdb/postgres refuse to run as root, so as root we run them as the
# 'postgres' OS user (created by the Debian package); otherwise as ourselves.
if [[ $EUID -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "OS user 'postgres' missing (is the Debian postgresql package installed?)"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

# initdb needs an empty dir; refuse (before any chown) rather than take over
# something unexpected, e.g. a mistyped HERALD_PG_DIR.
if [[ -d "$PGDIR" && ! -f "$PGDIR/PG_VERSION" && -n "$(ls -A "$PGDIR")" ]]; then
  die "$PGDIR is not empty and has no PG_VERSION; remove it or set HERALD_PG_DIR"
fi

# Data dir must exist, be owned by the server user and be mode 0700 (postgres
# refuses group/world-accessible data dirs).
mkdir -p "$PGDIR"
if [[ $EUID -eq 0 ]]; then
  chown postgres:postgres "$PGDIR"
fi
chmod 700 "$PGDIR"
# The postgres user must be able to traverse the parents (e.g. not under /root).
as_pg test -w "$PGDIR" || die "user $(as_pg id -un) cannot write $PGDIR (check parent dir permissions)"

LOGFILE="$PGDIR/postgres.log"

if [[ ! -f "$PGDIR/PG_VERSION" ]]; then
  log "initdb in $PGDIR ($("$BINDIR/postgres" --version))"
  # trust auth: throwaway, loopback-only server for tests. --no-locale gives a
  # deterministic C collation independent of the host's installed locales;
  # --no-sync: no point fsyncing a throwaway cluster.
  as_pg "$BINDIR/initdb" -D "$PGDIR" --auth=trust -U "$PGUSER_NAME" \
    --encoding=UTF8 --no-locale --no-sync >&2
fi

# pg_ctl status: 0 = running, 3 = not running, 4 = no/invalid data dir.
if as_pg "$BINDIR/pg_ctl" status -D "$PGDIR" >/dev/null 2>&1; then
  log "server already running on $PGDIR"
else
  log "starting server on 127.0.0.1:$PORT (log: $LOGFILE)"
  # fsync/synchronous_commit/full_page_writes off: durability is pointless for
  # throwaway test data and these make DDL-heavy test suites much faster.
  # max_connections=300: parallel test workers each open pools.
  # Socket in the data dir: /var/run/postgresql may not exist or be writable.
  if ! as_pg "$BINDIR/pg_ctl" start -D "$PGDIR" -l "$LOGFILE" -w -t "$READY_TIMEOUT" \
      -o "-p $PORT -k '$PGDIR' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      >&2; then
    log "pg_ctl start failed; last lines of $LOGFILE:"
    tail -n 30 "$LOGFILE" >&2 2>/dev/null || true
    exit 1
  fi
fi

# pg_ctl -w only checks the server it started; also verify TCP on the expected
# port (catches e.g. an already-running server started with another port).
deadline=$((SECONDS + READY_TIMEOUT))
# -U/-d: avoid "role root does not exist" noise in the server log.
until "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U "$PGUSER_NAME" -d postgres; do
  if (( SECONDS >= deadline )); then
    log "server not ready on 127.0.0.1:$PORT after ${READY_TIMEOUT}s (if it was already running, was it started with another HERALD_PG_PORT? try stop.sh first); last lines of $LOGFILE:"
    tail -n 30 "$LOGFILE" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done

echo "postgres://${PGUSER_NAME}@127.0.0.1:${PORT}/postgres"
