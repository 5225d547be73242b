/**
 * The runtime image: built from images/runtime plus the codex build of the installed
 * @openai/codex package, tagged by its inputs, built at most once at a time.
 *
 * The tag is `alive-codex-runtime:<12 hex>`, a sha256 over every file under images/runtime,
 * the codex version and target, and the base image's reference and id. An upgrade of any of
 * them gives a new tag (so a rebuild); an unchanged tree finds its image and reuses it.
 * An explicit reference (ALIVE_CODEX_IMAGE / --image) is used as given and never built.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import tar from "tar-fs";
import { codexPackageInfo, findCodexVendorDir, parseCodexPackageInfo } from "../codex-package.js";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { Docker } from "./engine.js";
import { isNotFound, toSidecarError, withDocker } from "./engine.js";
import { LABEL_PREFIX } from "./labels.js";
import { raceAbort } from "../shared/abort.js";

export const RUNTIME_IMAGE_REPOSITORY = "alive-codex-runtime";
/** What scripts/make-base-image.mjs tags by default. */
export const LOCAL_BASE_IMAGE = "alive-codex-base:bookworm";
/** The directory, inside the build context, that holds the staged codex files. */
const CODEX_CONTEXT_DIR = "codex";
/** The vendor entries copied to /opt/codex (codex-resources/voice is left out). */
const CODEX_ENTRIES = ["codex-package.json", "bin", "codex-path", path.join("codex-resources", "bwrap")] as const;
/** Colour codes the classic builder wraps a RUN step's stderr in: noise in a JSON log line. */
// eslint-disable-next-line no-control-regex
const ANSI_ESCAPE = /\u001b\[[0-9;]*[A-Za-z]/g;
/** Build output lines kept for the error of a failed build. */
const ERROR_TAIL_LINES = 20;

export interface RuntimeImageOptions {
  docker: Docker;
  /** The image the Dockerfile builds FROM (ALIVE_CODEX_BASE_IMAGE). */
  baseImage: string;
  /** ALIVE_CODEX_IMAGE: used as given, never built; null derives the tag from the build inputs. */
  explicitRef: string | null;
  log: Logger;
  /** Every line of build (and base pull) output; without it the lines go to the logger at info. */
  onProgress?: (line: string) => void;
  /** The Dockerfile's directory; defaults to the package's images/runtime. */
  contextDir?: string;
  /** The codex vendor directory; defaults to the installed @openai/codex one (findCodexVendorDir). */
  codexVendorDir?: string;
}

export interface EnsureImageResult {
  ref: string;
  /** True when this call built the image, false when it was already there. */
  built: boolean;
}

/** One file of the build context, for hashing: path relative to the context dir, '/'-separated. */
export interface ContextFile {
  path: string;
  content: string | Uint8Array;
}

export interface RuntimeTagInputs {
  files: readonly ContextFile[];
  codexVersion: string;
  codexTarget: string;
  baseImage: string;
  /** The base image's id (sha256:…), so a re-made base with the same name gives a new tag. */
  baseImageId: string;
}

/** The derived tag of the runtime image: a pure function of its build inputs (file order does not matter). */
export function runtimeImageTag(inputs: RuntimeTagInputs): string {
  const hash = createHash("sha256");
  const field = (name: string, value: string | Uint8Array): void => {
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  };
  field("format", "alive-codex-runtime/2");
  for (const file of [...inputs.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    field("file", file.path);
    field("content", file.content);
  }
  field("codex-version", inputs.codexVersion);
  field("codex-target", inputs.codexTarget);
  field("base-image", inputs.baseImage);
  field("base-image-id", inputs.baseImageId);
  return `${RUNTIME_IMAGE_REPOSITORY}:${hash.digest("hex").slice(0, 12)}`;
}

/** The directory holding package.json, found by walking up from `from` (works from src/ and dist/src/). */
export function findPackageRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = path.dirname(from);
  for (;;) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`No package.json above ${from}: cannot find the sidecar's images/ directory`);
    dir = parent;
  }
}

/** <package root>/images/runtime: the Dockerfile and everything it copies besides codex. */
export function defaultRuntimeContextDir(): string {
  return path.join(findPackageRoot(), "images", "runtime");
}

/** Every regular file under `dir`, with '/'-separated paths relative to it. */
export async function readContextFiles(dir: string): Promise<ContextFile[]> {
  const files: ContextFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(path.join(dir, relative), { withFileTypes: true });
    for (const entry of entries) {
      const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) files.push({ path: child, content: await readFile(path.join(dir, child)) });
    }
  };
  await walk("");
  return files;
}

/** Whether the engine has an image under `ref`. */
export async function isImagePresent(docker: Docker, ref: string): Promise<boolean> {
  return withDocker(`inspect image ${ref}`, async () => {
    try {
      await docker.getImage(ref).inspect();
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  });
}

/** The image's id, or null when the engine does not have it. */
async function inspectImageId(docker: Docker, ref: string): Promise<string | null> {
  return withDocker(`inspect image ${ref}`, async () => {
    try {
      return (await docker.getImage(ref).inspect()).Id;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  });
}

function imageUnavailable(message: string, data: Record<string, unknown>, cause?: unknown): SidecarError {
  return new SidecarError(ErrorCode.imageUnavailable, message, { data, ...(cause === undefined ? {} : { cause }) });
}

function baseImageHint(baseImage: string): string {
  return (
    `pull it (docker pull ${baseImage}) where a registry is reachable, or make a local Debian bookworm base with ` +
    `\`node scripts/make-base-image.mjs\` and set ALIVE_CODEX_BASE_IMAGE=${LOCAL_BASE_IMAGE} (see docs/image.md)`
  );
}

function missingBaseImage(baseImage: string): SidecarError {
  return imageUnavailable(`Base image ${baseImage} is not present in the Docker engine: ${baseImageHint(baseImage)}`, {
    field: "baseImage",
    reason: "not present",
    baseImage,
  });
}

interface CodexFiles {
  vendorDir: string;
  version: string;
  target: string;
}

/** The codex vendor dir and what its codex-package.json says; a missing codex makes the image unavailable (-32005). */
function resolveCodex(options: RuntimeImageOptions): CodexFiles {
  try {
    if (options.codexVendorDir === undefined) {
      const info = codexPackageInfo();
      return { vendorDir: findCodexVendorDir(), version: info.version, target: info.target };
    }
    const file = path.join(options.codexVendorDir, "codex-package.json");
    const info = parseCodexPackageInfo(readFileSync(file, "utf8"), file);
    return { vendorDir: options.codexVendorDir, version: info.version, target: info.target };
  } catch (error) {
    throw imageUnavailable(`Cannot build the runtime image without the codex binary: ${errorMessage(error)}`, { reason: "codex binary not found" }, error);
  }
}

async function derivedTag(options: RuntimeImageOptions, contextDir: string, codex: CodexFiles, baseImageId: string): Promise<string> {
  const files = await readContextFiles(contextDir).catch((error: unknown) => {
    throw imageUnavailable(`Cannot read the runtime image's build files in ${contextDir}: ${errorMessage(error)}`, { reason: "build files unreadable", contextDir }, error);
  });
  return runtimeImageTag({ files, codexVersion: codex.version, codexTarget: codex.target, baseImage: options.baseImage, baseImageId });
}

/**
 * The runtime image reference: `explicitRef` as given, else the tag derived from the build
 * inputs. Needs the base image present (its id is an input); it does not pull it (ensure() does).
 */
export async function runtimeImageRef(options: RuntimeImageOptions): Promise<string> {
  if (options.explicitRef !== null) return options.explicitRef;
  const baseImageId = await inspectImageId(options.docker, options.baseImage);
  if (baseImageId === null) throw missingBaseImage(options.baseImage);
  return derivedTag(options, options.contextDir ?? defaultRuntimeContextDir(), resolveCodex(options), baseImageId);
}

/** Follows a pull or build stream to its end; rejects with the first `error` the engine reported. */
function followStream(docker: Docker, stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: string | null = null;
    let partial = "";
    const emit = (text: string): void => {
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) emitLine(line);
    };
    const emitLine = (line: string): void => {
      const clean = line.replace(ANSI_ESCAPE, "").trimEnd();
      if (clean.trim() !== "") onLine(clean);
    };
    docker.modem.followProgress(
      stream,
      (error: Error | null) => {
        emitLine(partial);
        if (error) reject(error);
        else if (failure !== null) reject(new BuildFailure(failure));
        else resolve();
      },
      (event: { stream?: unknown; status?: unknown; id?: unknown; progressDetail?: unknown; error?: unknown; errorDetail?: { message?: unknown } }) => {
        if (typeof event.stream === "string") emit(event.stream);
        else if (typeof event.status === "string") {
          // Pull progress bars (progressDetail with numbers) would flood the log: keep status changes only.
          const detail = event.progressDetail as { current?: unknown } | undefined;
          if (detail?.current === undefined) onLine(typeof event.id === "string" ? `${event.id}: ${event.status}` : event.status);
        }
        if (event.error !== undefined || event.errorDetail !== undefined) {
          const message = typeof event.errorDetail?.message === "string" ? event.errorDetail.message : String(event.error);
          failure ??= message;
          onLine(`ERROR: ${message}`);
        }
      },
    );
  });
}

/** An error the engine reported inside a build or pull stream (the HTTP call itself succeeded). */
class BuildFailure extends Error {
  override readonly name = "BuildFailure";
}

/**
 * Stages the build context in a temp dir of symlinks (packed with `dereference`, so the ~370 MB
 * of codex is streamed from node_modules, never copied); returns the tar stream and the staging
 * dir, which the caller removes.
 */
async function stageBuildContext(contextDir: string, vendorDir: string): Promise<{ stream: NodeJS.ReadableStream; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "alive-codex-build-"));
  try {
    for (const entry of await readdir(contextDir)) {
      if (entry === CODEX_CONTEXT_DIR) {
        throw new Error(`${path.join(contextDir, entry)} clashes with the staged codex files: rename it`);
      }
      await symlink(path.join(contextDir, entry), path.join(dir, entry));
    }
    for (const entry of CODEX_ENTRIES) {
      const source = path.join(vendorDir, entry);
      if (!existsSync(source)) throw new Error(`${source} is missing: reinstall @openai/codex (npm ci)`);
      const target = path.join(dir, CODEX_CONTEXT_DIR, entry);
      await mkdir(path.dirname(target), { recursive: true });
      await symlink(source, target);
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const pack = tar.pack(dir, {
    dereference: true,
    map: (header) => {
      // Deterministic ownership and modes: the Dockerfile relies on them (no chmod layer).
      header.uid = 0;
      header.gid = 0;
      const mode = header.mode ?? 0o644;
      header.mode = header.type === "directory" || (mode & 0o111) !== 0 ? 0o755 : 0o644;
      // Execute-only codex: the kernel makes a process whose binary it cannot read non-dumpable,
      // so the agent (same uid) cannot read codex's /proc/<pid>/environ, where its key is.
      if (EXECUTE_ONLY.has(header.name)) header.mode = 0o711;
      return header;
    },
  });
  // tar-fs packs into a streamx Readable; dockerode only pipes it, which streamx supports.
  return { stream: pack as unknown as NodeJS.ReadableStream, dir };
}

const EXECUTE_ONLY = new Set(["codex/bin/codex", "codex/bin/codex-code-mode-host"]);

/** One ensure in progress, shared by every caller that arrives while it runs. */
interface BuildFlight {
  promise: Promise<EnsureImageResult>;
  controller: AbortController;
  waiters: number;
  settled: boolean;
}

/**
 * The runtime image of one sidecar: resolves its reference and makes sure the engine has it.
 * Concurrent ensure() calls share one build; a build nobody waits for any more is cancelled.
 */
export class RuntimeImage {
  readonly #options: RuntimeImageOptions;
  #inflight: BuildFlight | null = null;

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
  async ensure(signal?: AbortSignal): Promise<EnsureImageResult> {
    signal?.throwIfAborted();
    let flight = this.#inflight;
    if (flight === null) {
      const controller = new AbortController();
      const created: BuildFlight = { promise: Promise.resolve({ ref: "", built: false }), controller, waiters: 0, settled: false };
      created.promise = this.#ensureOnce(controller.signal).finally(() => {
        created.settled = true;
        if (this.#inflight === created) this.#inflight = null;
      });
      // Waiters handle the outcome; this keeps a build whose waiters all left from being an unhandled rejection.
      created.promise.catch(() => {});
      this.#inflight = flight = created;
    }
    flight.waiters += 1;
    try {
      return signal === undefined ? await flight.promise : await raceAbort(flight.promise, signal);
    } finally {
      flight.waiters -= 1;
      if (flight.waiters === 0 && !flight.settled) {
        flight.controller.abort(signal?.reason);
        if (this.#inflight === flight) this.#inflight = null;
      }
    }
  }

  async #ensureOnce(signal: AbortSignal): Promise<EnsureImageResult> {
    const { docker, explicitRef, baseImage } = this.#options;
    if (explicitRef !== null) {
      if (await isImagePresent(docker, explicitRef)) return { ref: explicitRef, built: false };
      throw imageUnavailable(
        `Runtime image ${explicitRef} (ALIVE_CODEX_IMAGE / --image) is not present in the Docker engine: ` +
          `pull or load it (docker pull / docker load), or unset ALIVE_CODEX_IMAGE so the sidecar builds images/runtime itself`,
        { field: "image", reason: "not present", image: explicitRef },
      );
    }
    const codex = resolveCodex(this.#options);
    const contextDir = this.#options.contextDir ?? defaultRuntimeContextDir();
    let baseImageId = await inspectImageId(docker, baseImage);
    if (baseImageId === null) {
      await this.#pullBaseImage(signal);
      baseImageId = await inspectImageId(docker, baseImage);
      if (baseImageId === null) throw missingBaseImage(baseImage);
    }
    const ref = await derivedTag(this.#options, contextDir, codex, baseImageId);
    if (await isImagePresent(docker, ref)) return { ref, built: false };
    signal.throwIfAborted();
    await this.#build(ref, contextDir, codex, signal);
    return { ref, built: true };
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

  async #pullBaseImage(signal: AbortSignal): Promise<void> {
    const { docker, baseImage, log } = this.#options;
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

  async #build(ref: string, contextDir: string, codex: CodexFiles, signal: AbortSignal): Promise<void> {
    const { docker, baseImage, log } = this.#options;
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
    const packing = new AbortController();
    const buildSignal = AbortSignal.any([signal, packing.signal]);
    try {
      staged = await stageBuildContext(contextDir, codex.vendorDir).catch((error: unknown) => {
        throw imageUnavailable(`Cannot stage the runtime image's build context: ${errorMessage(error)}`, { reason: "build context", contextDir }, error);
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
          throw imageUnavailable(`Cannot send the runtime image's build context: ${errorMessage(packError)}`, { reason: "build context", contextDir }, packError);
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
        throw imageUnavailable(`Building runtime image ${ref} ended without an image under that tag`, { reason: "build failed", image: ref, outputTail: tail.slice() });
      }
      log.info("built runtime image", { image: ref, durationMs: Date.now() - started });
    } finally {
      if (staged !== null) {
        const stream = staged.stream as NodeJS.ReadableStream & { destroy?: () => void };
        stream.destroy?.();
        await rm(staged.dir, { recursive: true, force: true });
      }
    }
  }
}
