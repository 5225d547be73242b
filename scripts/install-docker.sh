#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when dockerd is missing, starts
# dockerd in the background when nothing answers, and waits for it with a deadline.
# Exits 0 when `docker info` answers; fails loudly, with the end of dockerd's log, when it never does.
#
#   bash scripts/install-docker.sh
#   ALIVE_CODEX_DOCKERD_LOG=/path/to/log DOCKERD_WAIT_SECONDS=60 bash scripts/install-docker.sh
set -euo pipefail

LOG_FILE="${ALIVE_CODEX_DOCKERD_LOG:-/var/log/alive-codex-dockerd.log}"
WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

say() { printf 'install-docker: %s\n' "$*"; }
die() { printf 'install-docker: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

engine_answers() { docker info >/dev/null 2>&1; }
# While waiting: a user outside the docker group sees the engine only through sudo.
engine_answers_to_anyone() {
  engine_answers && return 0
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n docker info >/dev/null 2>&1
}

if command -v docker >/dev/null 2>&1 && engine_answers; then
  say "the Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')); nothing to do"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  say "dockerd is missing: installing Debian's docker.io"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io
fi

start_dockerd() {
  say "starting dockerd in the background, log: ${LOG_FILE}"
  as_root mkdir -p "$(dirname "${LOG_FILE}")"
  # setsid: dockerd outlives this script and the CI step's process group.
  as_root sh -c 'setsid nohup dockerd >>"$1" 2>&1 </dev/null &' sh "${LOG_FILE}"
}

if pgrep -x dockerd >/dev/null 2>&1; then
  say "dockerd is running but does not answer yet; waiting for it (or for it to exit, then starting one)"
else
  start_dockerd
fi

deadline=$(( $(date +%s) + WAIT_SECONDS ))
until engine_answers_to_anyone; do
  # A dockerd that was shutting down when we looked has gone: start our own.
  if ! pgrep -x dockerd >/dev/null 2>&1; then start_dockerd; fi
  if [ "$(date +%s)" -ge "${deadline}" ]; then
    {
      echo "install-docker: ERROR: the Docker engine did not answer within ${WAIT_SECONDS} s."
      echo "install-docker: last lines of ${LOG_FILE}:"
      as_root tail -n 40 "${LOG_FILE}" 2>/dev/null || echo "(no log)"
      echo "install-docker: \`docker info\` says:"
      docker info 2>&1 | tail -n 5 || true
    } >&2
    exit 1
  fi
  # Poll the condition (docker info) about once a second until the deadline.
  sleep 1
done

if ! engine_answers; then
  die "dockerd answers for root only: add $(id -un) to the docker group, or run as root"
fi
say "the Docker engine answers ($(docker version --format '{{.Server.Version}}'))"
