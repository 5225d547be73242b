/**
 * The codex of the runtime image, as the sidecar reports and checks it: the version asked for
 * (ALIVE_CODEX_CODEX_VERSION, else the SDK's), the version found in the image (read once per image
 * reference), whether the sidecar drives it, and the flags it adds for it.
 */
import { codexFlagsFor, codexSupport, MIN_CODEX_VERSION } from "../codex-versions.js";
import { errorMessage } from "../errors.js";
import { raceAbort } from "../shared/abort.js";
import type { Logger } from "../log.js";
import type { CodexHealth } from "../service.js";
import { isImagePresent } from "./base-image.js";
import type { Docker } from "./engine.js";
import { readImageCodex, type ImageCodex } from "./image-codex.js";
import { RuntimeImage } from "./images.js";
import { Labels } from "./labels.js";
import { sdkCodexVersion } from "../codex-package.js";
import type { SidecarConfig } from "../config.js";

const START_READ_TIMEOUT_MS = 10_000;

export interface RuntimeCodexOptions {
  docker: Docker;
  image: Pick<RuntimeImage, "ref">;
  /** ALIVE_CODEX_CODEX_VERSION (null: unset). */
  configured: string | null;
  /** ALIVE_CODEX_IMAGE is set: the image is used as given, whatever codex it carries. */
  explicitImage: boolean;
  /** The version @openai/codex-sdk was released with (sdkCodexVersion()). */
  sdk: string;
  /** For the container an image without the label is read through. */
  labels: Record<string, string>;
  log: Logger;
}

/** Why the sidecar must not start with the codex `found` in the image: unsupported, or not the one asked for. Null when it may. */
export function codexStartupProblem(found: ImageCodex, configured: string | null, imageRef: string): string | null {
  const support = codexSupport(found.version);
  if (!support.supported) {
    return `The runtime image ${imageRef} carries codex ${found.version}, which this sidecar cannot drive: ${support.reason}. Use an image with codex ${MIN_CODEX_VERSION} or later, or unset ALIVE_CODEX_IMAGE so the sidecar builds one (docs/image.md, Codex version)`;
  }
  if (configured !== null && found.version !== configured) {
    return `ALIVE_CODEX_CODEX_VERSION is ${configured}, but the runtime image ${imageRef} (ALIVE_CODEX_IMAGE) carries codex ${found.version}: an image given as is is never rebuilt. Set the version it carries, use an image with ${configured}, or unset ALIVE_CODEX_IMAGE so the sidecar builds one`;
  }
  return null;
}

export class RuntimeCodex {
  readonly #options: RuntimeCodexOptions;
  /** The version found per image reference: an image's content never changes under its id-derived tag. */
  readonly #found = new Map<string, ImageCodex>();
  #flags: string[];

  constructor(options: RuntimeCodexOptions) {
    this.#options = options;
    this.#flags = codexFlagsFor(this.requested ?? MIN_CODEX_VERSION);
  }

  /** What the image is built with, or must carry: the setting, else the SDK's when the sidecar builds it; null for an image given as is. */
  get requested(): string | null {
    const { configured, explicitImage, sdk } = this.#options;
    return configured ?? (explicitImage ? null : sdk);
  }

  /** The flags the launcher adds to `codex exec`: for the version found at start-up, else the one asked for. */
  get flags(): string[] {
    return [...this.#flags];
  }

  /**
   * The codex in the image `ref` names (by default the runtime image's current reference), read once
   * per reference; null while the image is absent or carries no codex.
   */
  async found(knownRef?: string): Promise<{ ref: string; codex: ImageCodex } | null> {
    const { docker, image, labels } = this.#options;
    const ref = knownRef ?? (await image.ref());
    const known = this.#found.get(ref);
    if (known !== undefined) return { ref, codex: known };
    if (!(await isImagePresent(docker, ref))) return null;
    const codex = await readImageCodex(docker, ref, { labels });
    if (codex === null) return null;
    this.#found.set(ref, codex);
    return { ref, codex };
  }

  /**
   * At start-up: the codex in the image when it can be read (an engine that does not answer, or an
   * image not built yet, leave it for later), refusing (throwing) one the sidecar cannot drive or an
   * image given as is that carries another version than the one set; a warning for a version the
   * sidecar's tests have not run against.
   */
  async checkAtStart(): Promise<void> {
    const { log } = this.#options;
    let found: { ref: string; codex: ImageCodex } | null = null;
    try {
      // Bounded: an engine that accepts the connection but does not answer must not hold start-up (health reads it later).
      found = await raceAbort(this.found(), AbortSignal.timeout(START_READ_TIMEOUT_MS));
    } catch (error) {
      // No engine yet, or no base image to derive the tag from: health reports the version once the image is there.
      log.info("the runtime image's codex version is not known at start-up", { error: errorMessage(error) });
    }
    if (found !== null) {
      const problem = codexStartupProblem(found.codex, this.#options.configured, found.ref);
      if (problem !== null) throw new Error(problem);
      this.#flags = codexFlagsFor(found.codex.version);
    }
    const version = found?.codex.version ?? this.requested;
    if (version !== null) {
      const support = codexSupport(version);
      if (support.supported && !support.tested) {
        log.warn(
          "codex version not tested with this sidecar: turns may fail if its event stream changed (docs/image.md, Codex version)",
          { codexVersion: version, sdk: this.#options.sdk },
        );
      }
    }
    log.info("the codex the workspaces run", {
      requested: this.requested,
      found: found?.codex.version ?? null,
      source: found?.codex.source ?? null,
      flags: this.#flags,
    });
  }

  /** sidecar.health's `codex`, from what is known without a call to the engine when `found` is given. */
  health(found: ImageCodex | null): CodexHealth {
    const version = found?.version ?? null;
    const shown = version ?? this.requested;
    const support = shown === null ? null : codexSupport(shown);
    return {
      version,
      requested: this.requested,
      sdk: this.#options.sdk,
      tested: support?.supported === true && support.tested,
      flags: this.flags,
    };
  }
}

/**
 * The image the workspaces run (built if need be, on first use) and its codex, checked: refused
 * when the image carries a codex the SDK cannot drive, or not the one the config names.
 */
export async function openRuntime(
  docker: Docker,
  config: Pick<SidecarConfig, "baseImage" | "image" | "codexVersion" | "npmRegistry" | "stateDir">,
  options: { labels: Record<string, string>; log: Logger; onProgress?: (line: string) => void },
): Promise<{ image: RuntimeImage; codex: RuntimeCodex }> {
  const { log } = options;
  const image = new RuntimeImage({
    docker,
    baseImage: config.baseImage,
    explicitRef: config.image,
    codexVersion: config.codexVersion,
    npmRegistry: config.npmRegistry,
    log,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const codex = new RuntimeCodex({
    docker,
    image,
    configured: config.codexVersion,
    explicitImage: config.image !== null,
    sdk: sdkCodexVersion(),
    labels: { [Labels.stateDir]: config.stateDir, ...options.labels },
    log,
  });
  await codex.checkAtStart();
  return { image, codex };
}
