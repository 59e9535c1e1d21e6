#!/usr/bin/env bash
# Stop the throwaway Kafka broker started by infra/kafka/start.sh.
#
# Usage:  infra/kafka/stop.sh [--clean]
#   --clean  also delete the data dir (next start.sh formats a new one)
#
# Env:  HERALD_KAFKA_PORT  client port (default 19092), same as start.sh: finds the data dir
#       HERALD_KAFKA_DIR   data dir (default: the one start.sh used for that port)
set -euo pipefail

PORT="${HERALD_KAFKA_PORT:-19092}"
POINTER="/tmp/herald-kafka-${PORT}.dir"
CLEAN=0
STOP_TIMEOUT=30

log() { echo "[herald-kafka] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --clean) CLEAN=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument: $arg (usage: $0 [--clean])" ;;
  esac
done

DIR="${HERALD_KAFKA_DIR:-}"
if [[ -z "$DIR" && -f "$POINTER" ]]; then DIR="$(cat "$POINTER")"; fi
if [[ -z "$DIR" ]]; then
  log "no broker started by start.sh on port $PORT (no $POINTER, no HERALD_KAFKA_DIR)"
  exit 0
fi
PIDFILE="$DIR/kafka.pid"

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  pid="$(cat "$PIDFILE")"
  log "stopping broker (pid $pid, data $DIR)"
  # SIGTERM: Kafka's shutdown hook closes the logs cleanly; SIGKILL only if it hangs.
  kill -TERM "$pid"
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      log "broker still running after ${STOP_TIMEOUT}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f -- "$PIDFILE"
else
  log "no broker running on $DIR"
fi

if (( CLEAN )) && [[ -e "$DIR" ]]; then
  # Guard against a mistyped HERALD_KAFKA_DIR wiping something that isn't ours.
  if [[ ! -f "$DIR/server.properties" && -n "$(ls -A "$DIR" 2>/dev/null)" ]]; then
    die "$DIR does not look like a data dir of start.sh (no server.properties); not removing"
  fi
  log "removing $DIR"
  rm -rf -- "$DIR"
fi
if (( CLEAN )) || [[ ! -e "$DIR" ]]; then rm -f -- "$POINTER"; fi
