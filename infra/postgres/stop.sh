#!/usr/bin/env bash
# Stop the throwaway test PostgreSQL server started by infra/postgres/start.sh.
#
# Usage:  infra/postgres/stop.sh [--clean]
#   --clean  also delete the data dir (next start.sh re-runs initdb)
#
# Env:  HERALD_PG_DIR  data dir (default /tmp/herald-pg), same as start.sh.
set -euo pipefail

PGDIR="${HERALD_PG_DIR:-/tmp/herald-pg}"
CLEAN=0

log() { echo "[herald-pg] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --clean) CLEAN=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument: $arg (usage: $0 [--clean])" ;;
  esac
done

# Same lookup as start.sh: newest major version with server binaries.
BINDIR=$(for d in /usr/lib/postgresql/*/bin; do
           if [[ -x "$d/pg_ctl" ]]; then echo "$d"; fi
         done | sort -t/ -k5,5V | tail -n1)

# pg_ctl refuses to run as root; the server runs as 'postgres' in that case.
if [[ $EUID -eq 0 ]]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

if [[ -f "$PGDIR/PG_VERSION" && -n "$BINDIR" ]] \
   && as_pg "$BINDIR/pg_ctl" status -D "$PGDIR" >/dev/null 2>&1; then
  log "stopping server on $PGDIR"
  # fast: roll back open transactions and disconnect clients; don't wait for them.
  as_pg "$BINDIR/pg_ctl" stop -D "$PGDIR" -m fast -w >&2
else
  log "no server running on $PGDIR"
fi

if (( CLEAN )) && [[ -e "$PGDIR" ]]; then
  # Guard against a mistyped HERALD_PG_DIR wiping something that isn't ours.
  if [[ ! -f "$PGDIR/PG_VERSION" && -n "$(ls -A "$PGDIR" 2>/dev/null)" ]]; then
    die "$PGDIR does not look like a PostgreSQL data dir (no PG_VERSION); not removing"
  fi
  log "removing $PGDIR"
  rm -rf -- "$PGDIR"
fi
