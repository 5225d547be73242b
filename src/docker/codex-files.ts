/** The codex build the runtime image carries: its vendor directory and what its codex-package.json says. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { codexPackageInfo, findCodexVendorDir, parseCodexPackageInfo } from "../codex-package.js";
import { errorMessage, imageUnavailable } from "../errors.js";

export interface CodexFiles {
  vendorDir: string;
  version: string;
  target: string;
}

/**
 * The given vendor dir, or the installed @openai/codex one when undefined; a missing codex makes
 * the image unavailable (-32005).
 */
export function resolveCodexFiles(codexVendorDir: string | undefined): CodexFiles {
  try {
    if (codexVendorDir === undefined) {
      const info = codexPackageInfo();
      return { vendorDir: findCodexVendorDir(), version: info.version, target: info.target };
    }
    const file = path.join(codexVendorDir, "codex-package.json");
    const info = parseCodexPackageInfo(readFileSync(file, "utf8"), file);
    return { vendorDir: codexVendorDir, version: info.version, target: info.target };
  } catch (error) {
    throw imageUnavailable(
      `Cannot build the runtime image without the codex binary: ${errorMessage(error)}`,
      { reason: "codex binary not found" },
      error,
    );
  }
}
