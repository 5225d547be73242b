/**
 * Which codex build a runtime image is made with, and where its files come from: an explicit vendor
 * dir, the installed @openai/codex package's, or the version the operator asked for, fetched from
 * the npm registry at build time (codex-download.ts).
 */
import { execa } from "execa";
import { codexTargetTriple } from "../codex-package.js";
import { errorMessage, imageUnavailable } from "../errors.js";
import { CodexDownloadError, downloadCodexVendor } from "./codex-download.js";
import { resolveCodexFiles, type CodexFiles } from "./codex-files.js";
import type { RuntimeImageOptions } from "./images.js";

/** The registry npm itself is configured with (`npm config get registry`), for a build that fetches codex. */
async function npmConfiguredRegistry(signal: AbortSignal): Promise<string> {
  try {
    const { stdout } = await execa("npm", ["config", "get", "registry"], { timeout: 15_000, cancelSignal: signal });
    const url = new URL(stdout.trim());
    if (url.protocol !== "https:" && url.protocol !== "http:")
      throw new Error(`npm names ${JSON.stringify(stdout.trim())}`);
    return url.href;
  } catch (error) {
    throw new CodexDownloadError(
      `no registry to fetch it from: ALIVE_CODEX_NPM_REGISTRY is unset and npm could not say its own (${errorMessage(error)})`,
    );
  }
}

/** The codex build an image is made with: its version and target, and its files (null: to be fetched at build). */
export type CodexChoice = Omit<CodexFiles, "vendorDir"> & { vendorDir: string | null };

/**
 * An explicit vendor dir as given; else the installed codex when no other version is asked for (or
 * it is that version); else the asked-for version for this machine's target, fetched at build time.
 */
export function chooseCodex(options: Pick<RuntimeImageOptions, "codexVersion" | "codexVendorDir">): CodexChoice {
  const requested = options.codexVersion ?? null;
  if (options.codexVendorDir !== undefined || requested === null) return resolveCodexFiles(options.codexVendorDir);
  try {
    const installed = resolveCodexFiles(undefined);
    if (installed.version === requested) return installed;
  } catch {
    // Not installed here (or incomplete): the asked-for version is fetched all the same.
  }
  let target: string;
  try {
    target = codexTargetTriple();
  } catch (error) {
    throw imageUnavailable(
      `Cannot build the runtime image with codex ${requested}: ${errorMessage(error)}`,
      { reason: "codex binary not found", codexVersion: requested },
      error,
    );
  }
  return { version: requested, target, vendorDir: null };
}

/** The codex build's vendor dir: the chosen one, else `codex.version` fetched into a temp dir under `scratch`. */
export async function codexVendorDirFor(
  codex: CodexChoice,
  scratch: string,
  options: Pick<RuntimeImageOptions, "npmRegistry" | "log">,
  signal: AbortSignal,
): Promise<string> {
  if (codex.vendorDir !== null) return codex.vendorDir;
  let registry = options.npmRegistry ?? "npm's configured registry";
  const started = Date.now();
  try {
    registry = options.npmRegistry ?? (await npmConfiguredRegistry(signal));
    options.log.info("fetching codex for the runtime image", {
      codexVersion: codex.version,
      target: codex.target,
      registry,
    });
    const vendorDir = await downloadCodexVendor({
      registry,
      version: codex.version,
      target: codex.target,
      dir: scratch,
      signal,
    });
    options.log.info("fetched codex for the runtime image", {
      codexVersion: codex.version,
      durationMs: Date.now() - started,
    });
    return vendorDir;
  } catch (error) {
    if (signal.aborted || !(error instanceof CodexDownloadError)) throw error;
    throw imageUnavailable(
      `Cannot build the runtime image with codex ${codex.version} (ALIVE_CODEX_CODEX_VERSION): ${error.message}. ` +
        `Check ALIVE_CODEX_NPM_REGISTRY (${registry}), or unset ALIVE_CODEX_CODEX_VERSION for the SDK's own codex (docs/image.md, Codex version)`,
      {
        field: "codexVersion",
        reason: "codex download failed",
        codexVersion: codex.version,
        registry,
        detail: error.message,
      },
      error,
    );
  }
}
