/**
 * doctor's image check on its scratch run: the runtime image the operator named is present, or the
 * one the sidecar would build builds. The image code (docker/) takes the adapter's client, which
 * doctor hands on and never uses itself.
 */
import type { SidecarConfig } from "../config.js";
import { isImagePresent } from "../docker/base-image.js";
import type { DockerEngine } from "../docker/docker-engine.js";
import { RuntimeImage } from "../docker/images.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { CheckFailure } from "./check-runner.js";

export async function checkImage(engine: DockerEngine, config: SidecarConfig, log: Logger): Promise<string> {
  if (config.image !== null) {
    if (await isImagePresent(engine.docker, config.image)) return `${config.image} present`;
    throw new CheckFailure(
      `the runtime image ${config.image} is missing`,
      `docker pull / docker load ${config.image}, or unset ALIVE_CODEX_IMAGE (--image) so the sidecar builds it (npm test builds one too)`,
    );
  }
  const image = new RuntimeImage({
    docker: engine.docker,
    baseImage: config.baseImage,
    explicitRef: null,
    codexVersion: config.codexVersion,
    npmRegistry: config.npmRegistry,
    log,
  });
  try {
    const { ref, built } = await image.ensure(AbortSignal.timeout(20 * 60_000));
    return built ? `${ref} built` : `${ref} present`;
  } catch (error) {
    throw new CheckFailure(
      `the runtime image cannot be built: ${errorMessage(error)}`,
      "without a registry, make the local base image first: node scripts/make-base-image.mjs (docs/image.md)",
    );
  }
}
