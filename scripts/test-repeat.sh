#!/usr/bin/env bash
# Runs CI (`bash .ci/run`: engine and runsc checks, npm ci, build, lint, typecheck, npm test) N times
# in a row, each from a fresh clone of this repository's HEAD, and prints the tally, with each run's
# sandbox-stall retries (test/support/stall-retry.ts). Proves the suite green every time, not once:
# a red CI lands nothing.
#
#   bash scripts/test-repeat.sh 10
#   KEEP_LOGS=/tmp/repeat bash scripts/test-repeat.sh 5     # keep each run's log there
#   ENGINE_LOCK=/tmp/engine.lock bash scripts/test-repeat.sh 10   # each run holds this flock(1)
#                                    # lock, so others sharing the engine can run between runs
#
# Exits 0 only when every run exited 0. Needs what `npm test` needs (a Docker engine:
# scripts/install-docker.sh); the images are built once and reused by later runs.
set -uo pipefail

runs="${1:-10}"
case "${runs}" in ''|*[!0-9]*) echo "usage: bash scripts/test-repeat.sh N (N runs, default 10)" >&2; exit 2 ;; esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d /tmp/alive-codex-repeat-XXXXXX)"
logs="${KEEP_LOGS:-${work}/logs}"
mkdir -p "${logs}"
trap 'rm -rf "${work}/clone"' EXIT

say() { printf 'test-repeat: %s\n' "$*"; }
say "${runs} run(s) of bash .ci/run from fresh clones of $(git -C "${repo}" rev-parse --short HEAD); logs in ${logs}"

passed=0
failed=0
rows=()
for i in $(seq 1 "${runs}"); do
  rm -rf "${work}/clone"
  git clone -q "${repo}" "${work}/clone"
  log="${logs}/run-${i}.log"
  start=${SECONDS}
  lock=()
  # -o: the lock is flock's own, not handed down: a dockerd that .ci/run starts would hold it forever.
  [ -n "${ENGINE_LOCK:-}" ] && lock=(flock -o "${ENGINE_LOCK}")
  ( cd "${work}/clone" && CI=true "${lock[@]}" bash .ci/run </dev/null ) >"${log}" 2>&1
  code=$?
  took=$(( SECONDS - start ))
  summary=$(grep -E '^ℹ (tests|pass|fail) ' "${log}" | awk '{printf "%s %s  ", $2, $3}')
  retries=$(grep -cE '^\s*RETRY ' "${log}")
  summary="${summary}retries ${retries}  "
  if [ "${code}" -eq 0 ]; then passed=$((passed + 1)); verdict="exit 0"; else failed=$((failed + 1)); verdict="exit ${code}"; fi
  rows+=("| ${i} | ${verdict} | ${took} s | ${summary}|")
  say "run ${i}/${runs}: ${verdict} in ${took} s  ${summary}"
  if [ "${code}" -ne 0 ]; then grep -E 'exit-check|ERROR|not ok|✖' "${log}" | head -n 20 | sed 's/^/    /'; fi
done

printf '\n| run | result | time | counts |\n|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
printf '\ntest-repeat: %d of %d runs exited 0\n' "${passed}" "${runs}"
[ "${failed}" -eq 0 ]
