/**
 * Finds the codex binary that the installed `@openai/codex` npm package ships for this platform,
 * the same way the Codex SDK does: `@openai/codex/package.json`, then the platform package
 * (`@openai/codex-linux-x64` …) resolved from there, then `vendor/<target triple>/`.
 *
 * The runtime image copies that vendor directory to /opt/codex, so the codex inside the
 * containers is exactly the version the SDK on the host was released with.
 *
 * It sits at the bottom, beside version.ts, rather than in codex/: the runtime image (docker/)
 * needs it too, and docker/ imports nothing above it.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const CODEX_PACKAGE = "@openai/codex";

/** Linux only: the binary goes into a Linux container, whatever else the npm package supports. */
const PLATFORM_PACKAGE_BY_TARGET: Readonly<Record<string, string>> = {
  "x86_64-unknown-linux-musl": "@openai/codex-linux-x64",
  "aarch64-unknown-linux-musl": "@openai/codex-linux-arm64",
};

/** What codex-package.json in a vendor directory says about itself. */
export interface CodexPackageInfo {
  version: string;
  target: string;
  /** Relative to the vendor dir, e.g. "bin/codex". */
  entrypoint: string;
}

/** The codex target triple for a Node platform/arch pair; throws for anything but Linux x64/arm64. */
export function codexTargetTriple(platform: string = process.platform, arch: string = process.arch): string {
  if (platform === "linux" || platform === "android") {
    if (arch === "x64") return "x86_64-unknown-linux-musl";
    if (arch === "arm64") return "aarch64-unknown-linux-musl";
  }
  throw new Error(
    `No Linux codex binary for ${platform}/${arch}: the sidecar runs on Linux x64 or arm64, where ${CODEX_PACKAGE} installs @openai/codex-linux-x64 or -linux-arm64`,
  );
}

/** Resolves @openai/codex/package.json: from this package first, else through @openai/codex-sdk (which depends on it). */
function resolveCodexPackageJson(): string {
  const require = createRequire(import.meta.url);
  try {
    return require.resolve(`${CODEX_PACKAGE}/package.json`);
  } catch (first) {
    try {
      const sdkEntry = require.resolve("@openai/codex-sdk");
      return createRequire(sdkEntry).resolve(`${CODEX_PACKAGE}/package.json`);
    } catch {
      throw new Error(
        `Cannot find ${CODEX_PACKAGE}: run \`npm ci\` in the sidecar's directory (it comes with @openai/codex-sdk)`,
        { cause: first },
      );
    }
  }
}

let cachedSdkVersion: string | undefined;

/**
 * The version of the installed @openai/codex package, the one @openai/codex-sdk depends on: the
 * default of ALIVE_CODEX_CODEX_VERSION. Read from its package.json, so it works on any platform.
 */
export function sdkCodexVersion(): string {
  if (cachedSdkVersion !== undefined) return cachedSdkVersion;
  const file = resolveCodexPackageJson();
  const version = (JSON.parse(readFileSync(file, "utf8")) as { version?: unknown }).version;
  if (typeof version !== "string" || !/^\d+\.\d+\.\d+/.test(version))
    throw new Error(`${file} has no usable "version" (got ${JSON.stringify(version)})`);
  cachedSdkVersion = version;
  return version;
}

let cachedVendorDir: string | undefined;
let cachedPackageInfo: CodexPackageInfo | undefined;

/**
 * The absolute vendor directory of this platform's codex build: it holds codex-package.json,
 * bin/codex, bin/codex-code-mode-host, codex-path/rg and codex-resources/. Throws an Error that
 * says what is missing and how to fix it.
 */
export function findCodexVendorDir(): string {
  if (cachedVendorDir !== undefined) return cachedVendorDir;
  const target = codexTargetTriple();
  const platformPackage = PLATFORM_PACKAGE_BY_TARGET[target];
  if (platformPackage === undefined) throw new Error(`No codex platform package known for ${target}`);
  const codexPackageJson = resolveCodexPackageJson();
  let platformPackageJson: string;
  try {
    platformPackageJson = createRequire(codexPackageJson).resolve(`${platformPackage}/package.json`);
  } catch (error) {
    throw new Error(
      `Cannot find ${platformPackage}, the optional dependency of ${CODEX_PACKAGE} that holds the codex binary: reinstall with optional dependencies (\`npm ci --include=optional\`)`,
      { cause: error },
    );
  }
  const vendorDir = path.join(path.dirname(platformPackageJson), "vendor", target);
  for (const file of ["codex-package.json", path.join("bin", "codex")]) {
    const full = path.join(vendorDir, file);
    if (!existsSync(full) || !statSync(full).isFile()) {
      throw new Error(`${platformPackage} is incomplete: ${full} is missing; reinstall it (\`npm ci\`)`);
    }
  }
  cachedVendorDir = vendorDir;
  return vendorDir;
}

/** Parses a codex-package.json text; `source` names the file in errors. */
export function parseCodexPackageInfo(text: string, source: string): CodexPackageInfo {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source} is not valid JSON`, { cause: error });
  }
  const record = (json ?? {}) as Record<string, unknown>;
  const { version, target, entrypoint } = record;
  if (typeof version !== "string" || !/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/.test(version)) {
    throw new Error(`${source} has no usable "version" (got ${JSON.stringify(version)})`);
  }
  return {
    version,
    target: typeof target === "string" ? target : "",
    entrypoint: typeof entrypoint === "string" ? entrypoint : "bin/codex",
  };
}

/** The vendor directory's codex-package.json, read once. */
export function codexPackageInfo(): CodexPackageInfo {
  if (cachedPackageInfo !== undefined) return cachedPackageInfo;
  const file = path.join(findCodexVendorDir(), "codex-package.json");
  cachedPackageInfo = parseCodexPackageInfo(readFileSync(file, "utf8"), file);
  return cachedPackageInfo;
}

/** The codex version the runtime image carries, e.g. "0.163.0" (from codex-package.json, cached). */
export function codexVersion(): string {
  return codexPackageInfo().version;
}
