/**
 * The base image the runtime image is built FROM, and the one place it is chosen: the configured
 * one (ALIVE_CODEX_BASE_IMAGE / --base-image) when set, else debian:bookworm-slim when the engine
 * has it, else the local base scripts/make-base-image.mjs makes (where no registry gives Debian).
 */
import { imageUnavailable, type SidecarError } from "../errors.js";
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";

/** The Dockerfile's own default: what a registry gives. */
export const DEFAULT_BASE_IMAGE = "debian:bookworm-slim";
/** What scripts/make-base-image.mjs tags by default. */
export const LOCAL_BASE_IMAGE = "alive-codex-base:bookworm";

/** Whether the engine has an image under `ref`. */
export async function isImagePresent(docker: Docker, ref: string): Promise<boolean> {
  return (await inspectImageId(docker, ref)) !== null;
}

/** The image's id, or null when the engine does not have it. */
export async function inspectImageId(docker: Docker, ref: string): Promise<string | null> {
  return (
    (await withDocker(`inspect image ${ref}`, async () => (await docker.getImage(ref).inspect()).Id, {
      ignore: [404],
    })) ?? null
  );
}

/**
 * The base image to build FROM: `configured` when set (ensure pulls it when missing), else the
 * first of debian:bookworm-slim and the local base that the engine has; -32005 naming both and
 * how to make one when it has neither (RuntimeImage.ensure then tries to pull debian:bookworm-slim).
 */
export async function resolveBaseImage(docker: Docker, configured: string | null): Promise<string> {
  if (configured !== null) return configured;
  for (const candidate of [DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE])
    if (await isImagePresent(docker, candidate)) return candidate;
  throw noBaseImage();
}

/** -32005 when no base image is configured and the engine has neither candidate; `pullError` says why pulling one failed. */
export function noBaseImage(pullError?: string): SidecarError {
  const pulled = pullError === undefined ? "" : ` (pulling ${DEFAULT_BASE_IMAGE} failed: ${pullError})`;
  return imageUnavailable(
    `No base image for the runtime image: the Docker engine has neither ${DEFAULT_BASE_IMAGE} nor ${LOCAL_BASE_IMAGE}${pulled}. ` +
      `Pull ${DEFAULT_BASE_IMAGE} (docker pull ${DEFAULT_BASE_IMAGE}) where a registry is reachable, or make the local one with ` +
      `\`node scripts/make-base-image.mjs\` (see docs/image.md); or set ALIVE_CODEX_BASE_IMAGE`,
    {
      field: "baseImage",
      reason: "not present",
      candidates: [DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE],
      ...(pullError === undefined ? {} : { detail: pullError }),
    },
  );
}

export function baseImageHint(baseImage: string): string {
  return (
    `pull it (docker pull ${baseImage}) where a registry is reachable, or make a local Debian bookworm base with ` +
    `\`node scripts/make-base-image.mjs\` and set ALIVE_CODEX_BASE_IMAGE=${LOCAL_BASE_IMAGE} (see docs/image.md)`
  );
}

export function missingBaseImage(baseImage: string): SidecarError {
  return imageUnavailable(`Base image ${baseImage} is not present in the Docker engine: ${baseImageHint(baseImage)}`, {
    field: "baseImage",
    reason: "not present",
    baseImage,
  });
}
