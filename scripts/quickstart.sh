#!/usr/bin/env bash
# The README's first quick-start command: from a checkout to a running sidecar.
#
#   bash scripts/quickstart.sh [alive-codex serve flags...]
#
# 1. a Docker engine (scripts/install-docker.sh installs and starts one if none answers), with
#    gVisor registered as the runtime "runsc" (scripts/install-runsc.sh: workspace.ensure's
#    runtime "runsc", and the test suite runs the turn path and the escape suite under it);
# 2. npm ci and npm run build;
# 3. a base image: ALIVE_CODEX_BASE_IMAGE if set, else debian:bookworm-slim when present, else
#    alive-codex-base:bookworm when present, else debian:bookworm-slim when pullable, else a local
#    one made by scripts/make-base-image.mjs (alive-codex-base:bookworm);
# 4. the runtime image, ensured now rather than on the first workspace;
# 5. the state dir and workspace roots (ALIVE_CODEX_STATE_DIR, ALIVE_CODEX_WORKSPACE_ROOTS or defaults);
# 6. exec alive-codex serve with the flags given here.
# Settings come from the environment (see README); flags given here reach `serve` only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'quickstart: %s\n' "$*"; }

say "Docker engine"
bash scripts/install-docker.sh

say "gVisor (runsc) for workspaces that ask for it"
bash scripts/install-runsc.sh

say "npm ci && npm run build"
npm ci
npm run build

# The sidecar chooses its base image itself (resolveBaseImage, src/docker/base-image.ts): the
# configured one, else debian:bookworm-slim when present, else the local base. The quick start only
# makes sure there is one to choose: pulled where a registry gives it, else made locally.
DEFAULT_BASE_IMAGE="debian:bookworm-slim"
LOCAL_BASE_IMAGE="alive-codex-base:bookworm"
CHOOSE_BASE_IMAGE='
import { createDockerClient } from "./dist/src/docker/engine.js";
import { resolveBaseImage } from "./dist/src/docker/base-image.js";
console.log(await resolveBaseImage(createDockerClient(process.env.DOCKER_HOST || "unix:///var/run/docker.sock"), null));
'
if [ -n "${ALIVE_CODEX_BASE_IMAGE:-}" ]; then
  say "base image ${ALIVE_CODEX_BASE_IMAGE} (ALIVE_CODEX_BASE_IMAGE)"
  if ! docker image inspect "${ALIVE_CODEX_BASE_IMAGE}" >/dev/null 2>&1 && [ "${ALIVE_CODEX_BASE_IMAGE}" = "${LOCAL_BASE_IMAGE}" ]; then
    node scripts/make-base-image.mjs "${LOCAL_BASE_IMAGE}"
  fi
elif base_image="$(node --input-type=module -e "${CHOOSE_BASE_IMAGE}" 2>/dev/null)"; then
  say "base image ${base_image} (present; the sidecar chooses it)"
elif timeout 90 docker pull "${DEFAULT_BASE_IMAGE}"; then
  say "base image ${DEFAULT_BASE_IMAGE} (pulled)"
else
  say "no registry gives ${DEFAULT_BASE_IMAGE}: making a local base image, ${LOCAL_BASE_IMAGE}"
  node scripts/make-base-image.mjs "${LOCAL_BASE_IMAGE}"
fi

say "runtime image and directories"
node --input-type=module <<'NODE'
import { mkdirSync } from "node:fs";
import { loadConfig } from "./dist/src/config.js";
import { createDockerClient } from "./dist/src/docker/engine.js";
import { RuntimeImage } from "./dist/src/docker/images.js";
import { createLogger } from "./dist/src/log.js";

const config = loadConfig({}, process.env);
const log = createLogger({ level: "info" });
const runtime = new RuntimeImage({
  docker: createDockerClient(config.dockerHost),
  baseImage: config.baseImage,
  explicitRef: config.image,
  log,
  onProgress: (line) => console.log(`  | ${line}`),
});
try {
  const { ref, built } = await runtime.ensure();
  console.log(`quickstart: runtime image ${ref} (${built ? "built" : "present"})`);
} catch (error) {
  console.error(`quickstart: ERROR: ${error.message}`);
  process.exit(1);
}
for (const dir of [config.stateDir, ...config.workspaceRoots]) {
  mkdirSync(dir, { recursive: true });
  console.log(`quickstart: directory ${dir}`);
}
NODE

say "exec node dist/src/cli/main.js serve $*"
exec node dist/src/cli/main.js serve "$@"
