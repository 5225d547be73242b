/** The package version, read from package.json above dist/src (or src). */
import { readFileSync } from "node:fs";

export function readPackageVersion(): string {
  for (const relative of ["../../package.json", "../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), "utf8")) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === "alive-codex-sidecar" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // Try the next candidate.
    }
  }
  return "0.0.0";
}
