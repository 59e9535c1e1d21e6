#!/usr/bin/env bash
# Make Postfix's SMTP test tools, smtp-sink and smtp-source, available (the send benchmark uses
# them: smtp-sink as a loopback receiver that accepts and discards, smtp-source to measure the
# machine's ceiling).
#
# Usage:  infra/postfix/install.sh
#
# Idempotent: when both tools are already there it installs nothing. Otherwise it installs
# Debian's `postfix` package non-interactively (debconf preseeded to "No configuration") and
# keeps the postfix service from being started: only the two test tools are needed.
#
# Prints exactly two lines on stdout, the absolute paths of smtp-sink and smtp-source (in that
# order); everything else goes to stderr.
set -euo pipefail

log() { echo "[herald-postfix] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_tool() {
  local name=$1 candidate
  for candidate in "/usr/sbin/$name" "/usr/bin/$name" "/usr/local/sbin/$name"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  candidate=$(PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin" command -v "$name" 2>/dev/null || true)
  if [[ -n "$candidate" && -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  return 1
}

if sink=$(find_tool smtp-sink) && source=$(find_tool smtp-source); then
  log "already installed"
  echo "$sink"
  echo "$source"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "smtp-sink/smtp-source are missing and installing postfix needs root (or sudo)"
  SUDO=(sudo -n)
fi
command -v apt-get >/dev/null 2>&1 || die "smtp-sink/smtp-source are missing and this is not a Debian/Ubuntu machine (no apt-get): install Postfix's smtp-sink and smtp-source yourself"

# Keep the package's maintainer scripts from starting the postfix service: a policy-rc.d that
# refuses every start (exit 101), only for the time of the install and only if none exists.
POLICY=/usr/sbin/policy-rc.d
added_policy=0
cleanup() {
  if [[ $added_policy -eq 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi
}
trap cleanup EXIT
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n# herald infra/postfix/install.sh: no service starts during the install\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  added_policy=1
fi

log "installing Debian's postfix package (for smtp-sink and smtp-source)"
# No prompt: no mail configuration at all (no main.cf, so nothing to run even if started).
printf '%s\n' \
  'postfix postfix/main_mailer_type select No configuration' \
  "postfix postfix/mailname string $(hostname -f 2>/dev/null || hostname)" |
  "${SUDO[@]}" debconf-set-selections
"${SUDO[@]}" apt-get update >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix >&2

sink=$(find_tool smtp-sink) || die "postfix installed but smtp-sink is not there"
source=$(find_tool smtp-source) || die "postfix installed but smtp-source is not there"
log "installed"
echo "$sink"
echo "$source"
