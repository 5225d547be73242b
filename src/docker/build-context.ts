/** The runtime image's build context: images/runtime plus the codex vendor files, packed for the engine. */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import tar from "tar-fs";

/** The directory, inside the build context, that holds the staged codex files. */
const CODEX_CONTEXT_DIR = "codex";
/** The vendor entries copied to /opt/codex (codex-resources/voice is left out). */
const CODEX_ENTRIES = ["codex-package.json", "bin", "codex-path", path.join("codex-resources", "bwrap")] as const;
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

/**
 * Stages the build context in a temp dir of symlinks (packed with `dereference`, so the ~370 MB
 * of codex is streamed from node_modules, never copied); returns the tar stream and the staging
 * dir, which the caller removes.
 */
export async function stageBuildContext(
  contextDir: string,
  vendorDir: string,
): Promise<{ stream: NodeJS.ReadableStream; dir: string }> {
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
      // Executables 0755, codex included: gVisor (runsc) cannot run an execute-only (0711) binary,
      // and codex holds no secret worth hiding from its own workspace any more (docs/security.md).
      header.mode = header.type === "directory" || (mode & 0o111) !== 0 ? 0o755 : 0o644;
      return header;
    },
  });
  // tar-fs packs into a streamx Readable; dockerode only pipes it, which streamx supports.
  return { stream: pack as unknown as NodeJS.ReadableStream, dir };
}
