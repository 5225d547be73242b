/**
 * The runtime image: built from images/runtime plus a codex build (the installed @openai/codex
 * package's, or the version the operator chose, fetched from the npm registry: codex-download.ts),
 * tagged by its inputs (image-tag.ts), built at most once at a time.
 * An explicit reference (ALIVE_CODEX_IMAGE / --image) is used as given and never built.
 *
 * The parts: the base image and its choice (base-image.ts), the codex build and its files
 * (image-codex-choice.ts, codex-files.ts), the build context (build-context.ts), the engine's build
 * and pull streams (build-stream.ts), and the one shared build (shared/shared-flight.ts).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ErrorCode, SidecarError, errorMessage, imageUnavailable } from "../errors.js";
import type { Logger } from "../log.js";
import { SharedFlight } from "../shared/shared-flight.js";
import {
  DEFAULT_BASE_IMAGE,
  baseImageHint,
  inspectImageId,
  isImagePresent,
  missingBaseImage,
  noBaseImage,
  resolveBaseImage,
} from "./base-image.js";
import { defaultRuntimeContextDir, stageBuildContext } from "./build-context.js";
import { BuildFailure, followStream } from "./build-stream.js";
import type { Docker } from "./engine.js";
import { toSidecarError } from "./engine.js";
import { chooseCodex, codexVendorDirFor, type CodexChoice } from "./image-codex-choice.js";
import { readContextFiles, runtimeImageTag } from "./image-tag.js";
import { LABEL_PREFIX } from "./labels.js";

/** Build output lines kept for the error of a failed build. */
const ERROR_TAIL_LINES = 20;

export interface RuntimeImageOptions {
  docker: Docker;
  /** The image the Dockerfile builds FROM (ALIVE_CODEX_BASE_IMAGE); null lets resolveBaseImage choose. */
  baseImage: string | null;
  /** ALIVE_CODEX_IMAGE: used as given, never built; null derives the tag from the build inputs. */
  explicitRef: string | null;
  log: Logger;
  /** Every line of build (and base pull) output; without it the lines go to the logger at info. */
  onProgress?: (line: string) => void;
  /** The Dockerfile's directory; defaults to the package's images/runtime. */
  contextDir?: string;
  /** The codex vendor directory; defaults to the installed @openai/codex one (findCodexVendorDir). */
  codexVendorDir?: string;
  /**
   * ALIVE_CODEX_CODEX_VERSION: the codex version to build with; null or absent: the installed one.
   * Another version than the installed one is fetched from `npmRegistry` when the image is built.
   */
  codexVersion?: string | null;
  /** ALIVE_CODEX_NPM_REGISTRY; null or absent: npm's own configured registry (npmConfiguredRegistry). */
  npmRegistry?: string | null;
}

export interface EnsureImageResult {
  ref: string;
  /** True when this call built the image, false when it was already there. */
  built: boolean;
}

async function derivedTag(
  contextDir: string,
  codex: CodexChoice,
  baseImage: string,
  baseImageId: string,
): Promise<string> {
  const files = await readContextFiles(contextDir).catch((error: unknown) => {
    throw imageUnavailable(
      `Cannot read the runtime image's build files in ${contextDir}: ${errorMessage(error)}`,
      { reason: "build files unreadable", contextDir },
      error,
    );
  });
  return runtimeImageTag({ files, codexVersion: codex.version, codexTarget: codex.target, baseImage, baseImageId });
}

/**
 * The runtime image reference: `explicitRef` as given, else the tag derived from the build
 * inputs. Needs the base image present (its id is an input); it does not pull it (ensure() does).
 */
export async function runtimeImageRef(options: RuntimeImageOptions): Promise<string> {
  if (options.explicitRef !== null) return options.explicitRef;
  const baseImage = await resolveBaseImage(options.docker, options.baseImage);
  const baseImageId = await inspectImageId(options.docker, baseImage);
  if (baseImageId === null) throw missingBaseImage(baseImage);
  return derivedTag(options.contextDir ?? defaultRuntimeContextDir(), chooseCodex(options), baseImage, baseImageId);
}

/**
 * The runtime image of one sidecar: resolves its reference and makes sure the engine has it.
 * Concurrent ensure() calls share one build; a build nobody waits for any more is cancelled.
 */
export class RuntimeImage {
  readonly #options: RuntimeImageOptions;
  readonly #flight = new SharedFlight((signal) => this.#ensureOnce(signal));

  constructor(options: RuntimeImageOptions) {
    this.#options = options;
  }

  /** The reference workspace containers use (see runtimeImageRef). */
  ref(): Promise<string> {
    return runtimeImageRef(this.#options);
  }

  /**
   * Makes sure the image is in the engine: an explicit reference must already be there (else
   * -32005); a derived tag is built when missing, after pulling a missing base image.
   * `signal` ends this caller's wait; the build itself stops only when no caller waits any more.
   */
  ensure(signal?: AbortSignal): Promise<EnsureImageResult> {
    return this.#flight.run(signal);
  }

  async #ensureOnce(signal: AbortSignal): Promise<EnsureImageResult> {
    const { docker, explicitRef } = this.#options;
    if (explicitRef !== null) {
      if (await isImagePresent(docker, explicitRef)) return { ref: explicitRef, built: false };
      throw imageUnavailable(
        `Runtime image ${explicitRef} (ALIVE_CODEX_IMAGE / --image) is not present in the Docker engine: ` +
          `pull or load it (docker pull / docker load), or unset ALIVE_CODEX_IMAGE so the sidecar builds images/runtime itself`,
        { field: "image", reason: "not present", image: explicitRef },
      );
    }
    const codex = chooseCodex(this.#options);
    const contextDir = this.#options.contextDir ?? defaultRuntimeContextDir();
    const baseImage = await this.#chooseBaseImage(signal);
    let baseImageId = await inspectImageId(docker, baseImage);
    if (baseImageId === null) {
      await this.#pullBaseImage(baseImage, signal);
      baseImageId = await inspectImageId(docker, baseImage);
      if (baseImageId === null) throw missingBaseImage(baseImage);
    }
    const ref = await derivedTag(contextDir, codex, baseImage, baseImageId);
    if (await isImagePresent(docker, ref)) return { ref, built: false };
    signal.throwIfAborted();
    await this.#build(ref, baseImage, contextDir, codex, signal);
    return { ref, built: true };
  }

  /**
   * resolveBaseImage's choice. With none configured and neither candidate present, a registry is
   * the usual case: debian:bookworm-slim is pulled, and only when that fails is the base missing.
   */
  async #chooseBaseImage(signal: AbortSignal): Promise<string> {
    try {
      return await resolveBaseImage(this.#options.docker, this.#options.baseImage);
    } catch (error) {
      if (!(error instanceof SidecarError) || error.code !== ErrorCode.imageUnavailable) throw error;
      try {
        await this.#pullBaseImage(DEFAULT_BASE_IMAGE, signal);
      } catch (pullError) {
        if (signal.aborted || !(pullError instanceof SidecarError) || pullError.code !== ErrorCode.imageUnavailable)
          throw pullError;
        throw noBaseImage(errorMessage(pullError.cause ?? pullError));
      }
      return DEFAULT_BASE_IMAGE;
    }
  }

  #progress(image: string): (line: string) => void {
    const { onProgress, log } = this.#options;
    if (onProgress) {
      return (line) => {
        onProgress(line);
        log.debug("image build output", { image, line });
      };
    }
    return (line) => log.info("image build output", { image, line });
  }

  async #pullBaseImage(baseImage: string, signal: AbortSignal): Promise<void> {
    const { docker, log } = this.#options;
    log.info("pulling base image", { image: baseImage });
    try {
      const stream = await docker.pull(baseImage, { abortSignal: signal });
      await followStream(docker, stream, this.#progress(baseImage));
    } catch (error) {
      if (signal.aborted) throw error;
      const mapped = toSidecarError(error, `pull base image ${baseImage}`);
      if (mapped.code === ErrorCode.dockerUnreachable) throw mapped;
      throw imageUnavailable(
        `Base image ${baseImage} is not present and pulling it failed (${errorMessage(error)}): ${baseImageHint(baseImage)}`,
        { field: "baseImage", reason: "pull failed", baseImage, detail: errorMessage(error) },
        error,
      );
    }
  }

  async #build(
    ref: string,
    baseImage: string,
    contextDir: string,
    codex: CodexChoice,
    signal: AbortSignal,
  ): Promise<void> {
    const { docker, log } = this.#options;
    const started = Date.now();
    log.info("building runtime image", { image: ref, baseImage, codexVersion: codex.version, contextDir });
    const tail: string[] = [];
    const progress = this.#progress(ref);
    const onLine = (line: string): void => {
      tail.push(line);
      if (tail.length > ERROR_TAIL_LINES) tail.shift();
      progress(line);
    };
    let staged: { stream: NodeJS.ReadableStream; dir: string } | null = null;
    let scratch: string | null = null;
    const packing = new AbortController();
    const buildSignal = AbortSignal.any([signal, packing.signal]);
    try {
      if (codex.vendorDir === null) scratch = await mkdtemp(path.join(os.tmpdir(), "alive-codex-codex-"));
      const vendorDir = await codexVendorDirFor(codex, scratch ?? "", this.#options, signal);
      staged = await stageBuildContext(contextDir, vendorDir).catch((error: unknown) => {
        throw imageUnavailable(
          `Cannot stage the runtime image's build context: ${errorMessage(error)}`,
          { reason: "build context", contextDir },
          error,
        );
      });
      let packError: unknown = null;
      staged.stream.on("error", (error: unknown) => {
        packError = error;
        packing.abort(error);
      });
      try {
        const stream = await docker.buildImage(staged.stream, {
          t: ref,
          buildargs: { BASE_IMAGE: baseImage },
          forcerm: true,
          labels: {
            [`${LABEL_PREFIX}.image`]: "runtime",
            [`${LABEL_PREFIX}.codex-version`]: codex.version,
            [`${LABEL_PREFIX}.base-image`]: baseImage,
          },
          abortSignal: buildSignal,
        });
        await followStream(docker, stream, onLine);
      } catch (error) {
        if (signal.aborted) throw error;
        if (packError !== null) {
          throw imageUnavailable(
            `Cannot send the runtime image's build context: ${errorMessage(packError)}`,
            { reason: "build context", contextDir },
            packError,
          );
        }
        if (!(error instanceof BuildFailure)) {
          const mapped = toSidecarError(error, `build image ${ref}`);
          if (mapped.code === ErrorCode.dockerUnreachable) throw mapped;
        }
        throw imageUnavailable(
          `Building runtime image ${ref} FROM ${baseImage} failed: ${errorMessage(error)}. ` +
            `The base must be Debian bookworm with a working apt, and build containers on the default bridge must reach its package mirrors; ` +
            `fix the cause and retry (the build output is in the log; see docs/image.md)`,
          { reason: "build failed", image: ref, baseImage, detail: errorMessage(error), outputTail: tail.slice() },
          error,
        );
      }
      if (!(await isImagePresent(docker, ref))) {
        throw imageUnavailable(`Building runtime image ${ref} ended without an image under that tag`, {
          reason: "build failed",
          image: ref,
          outputTail: tail.slice(),
        });
      }
      log.info("built runtime image", { image: ref, durationMs: Date.now() - started });
    } finally {
      if (staged !== null) {
        const stream = staged.stream as NodeJS.ReadableStream & { destroy?: () => void };
        stream.destroy?.();
        await rm(staged.dir, { recursive: true, force: true });
      }
      if (scratch !== null) await rm(scratch, { recursive: true, force: true });
    }
  }
}
