/**
 * Fetches the codex build of a given @openai/codex version from an npm registry, for a runtime image
 * of a version other than the installed SDK's (ALIVE_CODEX_CODEX_VERSION).
 *
 * The way npm itself would: the package's version manifest names the platform package in its
 * optionalDependencies (0.163 on: an alias to `@openai/codex@<version>-linux-x64`); that package's
 * manifest gives the tarball and its sha512 integrity; the tarball is written to disk while hashed
 * and is extracted only once the hash matches, and only `package/vendor/<target>/` (plain files and
 * directories) comes out of it. The registry is the trust anchor, over TLS, as for `npm ci`.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs } from "node:fs";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import tar from "tar-fs";
import { parseCodexPackageInfo } from "../codex-package.js";

const CODEX_PACKAGE = "@openai/codex";
/** The platform packages' keys in @openai/codex's optionalDependencies, by codex target triple. */
const PLATFORM_KEYS: Readonly<Record<string, string>> = {
  "x86_64-unknown-linux-musl": "@openai/codex-linux-x64",
  "aarch64-unknown-linux-musl": "@openai/codex-linux-arm64",
};
/** A codex platform tarball is ~170 MB; anything much larger is not one. */
const MAX_TARBALL_BYTES = 1024 * 1024 * 1024;
const MANIFEST_TIMEOUT_MS = 30_000;
const TARBALL_TIMEOUT_MS = 15 * 60_000;

export interface CodexDownloadOptions {
  /** Base URL of the registry (ALIVE_CODEX_NPM_REGISTRY), without a trailing slash. */
  registry: string;
  version: string;
  /** The codex target triple (codexTargetTriple()). */
  target: string;
  /** An empty directory the download and its extraction go into; the caller removes it. */
  dir: string;
  signal?: AbortSignal;
}

/** Why a download failed, in words an operator can act on (the registry, the package, what went wrong). */
export class CodexDownloadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CodexDownloadError";
  }
}

/** npm's way of naming a version manifest: the scoped name's slash escaped. */
function manifestUrl(registry: string, name: string, version: string): string {
  return `${registry.replace(/\/+$/, "")}/${name.replace("/", "%2f")}/${encodeURIComponent(version)}`;
}

/** The platform package of `version` for `target`: from the version's optionalDependencies. */
export function platformPackageOf(
  manifest: unknown,
  version: string,
  target: string,
): { name: string; version: string } {
  const key = PLATFORM_KEYS[target];
  if (key === undefined)
    throw new CodexDownloadError(`no codex platform package is known for ${target} (Linux x64 and arm64 only)`);
  const deps = (manifest as { optionalDependencies?: Record<string, unknown> } | null)?.optionalDependencies ?? {};
  const spec = deps[key];
  if (typeof spec !== "string")
    throw new CodexDownloadError(
      `${CODEX_PACKAGE}@${version} lists no ${key} among its optionalDependencies: it has no build for ${target}`,
    );
  // "npm:@openai/codex@0.171.0-linux-x64" (an alias), else a plain version of a package of that name.
  const alias = /^npm:(@[^@/]+\/[^@]+)@(.+)$/.exec(spec);
  if (alias !== null) return { name: alias[1] as string, version: alias[2] as string };
  if (/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(spec)) return { name: key, version: spec };
  throw new CodexDownloadError(
    `${CODEX_PACKAGE}@${version} names its ${key} as ${JSON.stringify(spec)}: not an exact version`,
  );
}

/** The sha512 of an SRI string ("sha512-<base64>"), else null (npm's older sha1 shasum is not enough). */
export function sha512Of(integrity: unknown): string | null {
  if (typeof integrity !== "string") return null;
  for (const part of integrity.trim().split(/\s+/)) {
    const match = /^sha512-([A-Za-z0-9+/]+={0,2})$/.exec(part);
    if (match !== null) return match[1] as string;
  }
  return null;
}

async function getJson(url: string, what: string, signal: AbortSignal | undefined): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { accept: "application/json" },
      signal: AbortSignal.any([AbortSignal.timeout(MANIFEST_TIMEOUT_MS), ...(signal ? [signal] : [])]),
    });
  } catch (error) {
    throw new CodexDownloadError(
      `cannot reach the npm registry for ${what} (${url}): ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (response.status === 404)
    throw new CodexDownloadError(
      `the npm registry has no ${what} (${url}: 404); npm view ${CODEX_PACKAGE} versions lists the versions there are`,
    );
  if (!response.ok) throw new CodexDownloadError(`the npm registry answered ${response.status} for ${what} (${url})`);
  try {
    return await response.json();
  } catch (error) {
    throw new CodexDownloadError(`the npm registry's answer for ${what} (${url}) is not JSON`, { cause: error });
  }
}

/** Writes the tarball at `url` to `file` and checks it against `sha512` (base64) on the way. */
async function downloadVerified(
  url: string,
  file: string,
  sha512: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  let response: Response;
  const deadline = AbortSignal.any([AbortSignal.timeout(TARBALL_TIMEOUT_MS), ...(signal ? [signal] : [])]);
  try {
    response = await fetch(url, { signal: deadline });
  } catch (error) {
    throw new CodexDownloadError(`cannot download ${url}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
  if (!response.ok || response.body === null) throw new CodexDownloadError(`downloading ${url} got ${response.status}`);
  const hash = createHash("sha512");
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > MAX_TARBALL_BYTES)
        return done(new CodexDownloadError(`${url} is larger than ${MAX_TARBALL_BYTES} bytes: not a codex build`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(response.body, meter, createWriteStream(file, { mode: 0o600 }), { signal: deadline });
  } catch (error) {
    if (error instanceof CodexDownloadError) throw error;
    throw new CodexDownloadError(
      `downloading ${url} failed after ${bytes} bytes: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const got = hash.digest("base64");
  if (got !== sha512)
    throw new CodexDownloadError(
      `${url} does not match the registry's integrity (sha512 ${got}, expected ${sha512}): refusing it`,
    );
}

/**
 * Downloads and extracts codex `version` for `target` into `dir`; returns the vendor directory (the
 * layout the runtime image's build context takes: codex-package.json, bin/, codex-path/, ...).
 */
export async function downloadCodexVendor(options: CodexDownloadOptions): Promise<string> {
  const { registry, version, target, dir, signal } = options;
  const main = await getJson(manifestUrl(registry, CODEX_PACKAGE, version), `${CODEX_PACKAGE}@${version}`, signal);
  const platform = platformPackageOf(main, version, target);
  const what = `${platform.name}@${platform.version}`;
  const manifest = (await getJson(manifestUrl(registry, platform.name, platform.version), what, signal)) as {
    name?: unknown;
    version?: unknown;
    dist?: { tarball?: unknown; integrity?: unknown };
  } | null;
  if (manifest?.name !== platform.name || manifest.version !== platform.version) {
    throw new CodexDownloadError(
      `the registry's manifest for ${what} names ${JSON.stringify(manifest?.name)}@${JSON.stringify(manifest?.version)}`,
    );
  }
  const tarball = manifest.dist?.tarball;
  const sha512 = sha512Of(manifest.dist?.integrity);
  if (typeof tarball !== "string" || !/^https?:\/\//.test(tarball))
    throw new CodexDownloadError(`the registry's manifest for ${what} has no tarball URL`);
  if (sha512 === null)
    throw new CodexDownloadError(
      `the registry's manifest for ${what} has no sha512 integrity: refusing to use a tarball that cannot be checked`,
    );

  const file = path.join(dir, "codex.tgz");
  await downloadVerified(tarball, file, sha512, signal);
  const extracted = path.join(dir, "extracted");
  const keep = path.join(extracted, "package", "vendor", target);
  // Only the vendor dir of this target, only files and directories: nothing else of the tarball lands on disk.
  // chown false: the files stay root's (tar-fs would give them the tarball's owner ids when run as root).
  const extract = tar.extract(extracted, {
    chown: false,
    ignore: (name: string, header?: tar.Headers) =>
      !(name === keep || name.startsWith(`${keep}${path.sep}`)) ||
      (header?.type !== "file" && header?.type !== "directory"),
  } as tar.ExtractOptions);
  try {
    await pipeline(
      createReadStream(file),
      createGunzip(),
      extract as unknown as NodeJS.WritableStream,
      signal ? { signal } : {},
    );
  } catch (error) {
    throw new CodexDownloadError(
      `cannot extract ${what} (${tarball}): ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  } finally {
    await fs.rm(file, { force: true });
  }
  const infoFile = path.join(keep, "codex-package.json");
  let info;
  try {
    info = parseCodexPackageInfo(await fs.readFile(infoFile, "utf8"), `${what}'s codex-package.json`);
  } catch (error) {
    throw new CodexDownloadError(
      `${what} holds no usable vendor/${target}/codex-package.json: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (info.version !== version || (info.target !== "" && info.target !== target)) {
    throw new CodexDownloadError(
      `${what} carries codex ${info.version} for ${info.target || "no target"}, not ${version} for ${target}`,
    );
  }
  return keep;
}
