#!/usr/bin/env bash
# Makes gVisor's runsc available to the Docker engine as the runtime "runsc": installs Debian's
# runsc package when /usr/bin/runsc is missing, merges the runtime into /etc/docker/daemon.json
# (other keys and runtimes are kept; nothing is rewritten when it is already there), reloads
# dockerd with SIGHUP (never a restart: the engine may be shared) and waits until `docker info`
# lists it. Idempotent; docs/runtimes.md says why these flags.
#
#   bash scripts/install-runsc.sh
#   RUNSC_WAIT_SECONDS=30 DOCKER_DAEMON_JSON=/etc/docker/daemon.json bash scripts/install-runsc.sh
set -euo pipefail

DAEMON_JSON="${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
WAIT_SECONDS="${RUNSC_WAIT_SECONDS:-30}"
RUNSC_PATH=/usr/bin/runsc

say() { printf 'install-runsc: %s\n' "$*"; }
die() { printf 'install-runsc: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

RUNTIME_ARGS='["--platform=ptrace","--network=none","--host-uds=open","--host-fifo=open"]'
# The engine lists runsc with exactly these arguments (a runsc registered with others needs a reload).
engine_lists_runsc() { docker info --format '{{json .Runtimes.runsc}}' 2>/dev/null | tr -d ' ' | grep -qF "\"runtimeArgs\":${RUNTIME_ARGS}"; }

docker info >/dev/null 2>&1 || die "the Docker engine does not answer: run scripts/install-docker.sh first"

if [ ! -x "${RUNSC_PATH}" ]; then
  say "runsc is missing: installing Debian's runsc"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y runsc
fi
[ -x "${RUNSC_PATH}" ] || die "${RUNSC_PATH} is still missing after installing the runsc package"
say "$("${RUNSC_PATH}" --version 2>&1 | head -n 1)"

# ptrace: the platform that needs no KVM and works inside a VM. network=none: the workspace has no
# network of its own (NetworkMode none); the only mode that ran here. host-uds=open: lets processes
# in the sandbox connect to the host Unix sockets bind-mounted at /run/alive (egress, model, API).
# host-fifo=open: lets the log pump read the host FIFO at /run/alive/log (`docker logs`); without
# it gVisor gives the sandbox a pipe of its own and even listing /run/alive fails (EINVAL).
# node merges the runtime into the existing JSON and prints "unchanged" when it is already there.
merged="$(as_root cat "${DAEMON_JSON}" 2>/dev/null || echo '{}')"
result="$(printf '%s' "${merged}" | node -e '
  const fs = require("node:fs");
  const text = fs.readFileSync(0, "utf8").trim() || "{}";
  let config;
  try { config = JSON.parse(text); } catch (error) { console.error(`not JSON: ${error.message}`); process.exit(2); }
  const wanted = { path: process.argv[1], runtimeArgs: JSON.parse(process.argv[2]) };
  const runtimes = config.runtimes ?? {};
  if (JSON.stringify(runtimes.runsc) === JSON.stringify(wanted)) { console.log("unchanged"); process.exit(0); }
  config.runtimes = { ...runtimes, runsc: wanted };
  console.log(JSON.stringify(config, null, 2));
' "${RUNSC_PATH}" "${RUNTIME_ARGS}")" || die "${DAEMON_JSON} is not valid JSON; fix it by hand (nothing was changed)"

if [ "${result}" = "unchanged" ]; then
  say "${DAEMON_JSON} already registers runsc"
else
  as_root mkdir -p "$(dirname "${DAEMON_JSON}")"
  if as_root test -e "${DAEMON_JSON}"; then as_root cp -p "${DAEMON_JSON}" "${DAEMON_JSON}.bak-install-runsc"; fi
  printf '%s\n' "${result}" | as_root tee "${DAEMON_JSON}.tmp" >/dev/null
  as_root mv "${DAEMON_JSON}.tmp" "${DAEMON_JSON}"
  say "registered runsc in ${DAEMON_JSON}"
fi

if engine_lists_runsc; then
  say "the engine lists runsc with these arguments; nothing to reload"
  exit 0
fi

pids="$(pidof dockerd || true)"
[ -n "${pids}" ] || die "no dockerd process to reload (is the engine remote? register runsc there)"
say "reloading dockerd (SIGHUP to ${pids})"
# shellcheck disable=SC2086
as_root kill -HUP ${pids}

deadline=$(( $(date +%s) + WAIT_SECONDS ))
until engine_lists_runsc; do
  if [ "$(date +%s)" -ge "${deadline}" ]; then
    die "the engine did not list runsc within ${WAIT_SECONDS} s after SIGHUP; \`docker info\` runtimes: $(docker info --format '{{json .Runtimes}}' 2>&1)"
  fi
  # Poll the condition (docker info) about twice a second until the deadline.
  sleep 0.5
done
say "the engine lists runsc: $(docker info --format '{{json .Runtimes.runsc}}')"
