/** The workspace's host directories: HOME and TMPDIR for the tenant's uid:gid, run/ (the log FIFO and the shell rc) root's. */
import { promises as fs } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import type { WorkspacePaths } from "./paths.js";
import { SHELL_RC_TARGETS } from "./spec.js";

const SHELL_RC = "# Managed by alive-codex-sidecar: read-only, so nothing in HOME can change what agent shells start with.\numask 022\n";

/** HOME (with .codex/ and .claude/) and TMPDIR owned by the workspace's uid:gid; run/ stays root's. */
export async function prepareWorkspaceDirs(paths: WorkspacePaths, uid: number, gid: number): Promise<void> {
  await fs.mkdir(paths.root, { recursive: true, mode: 0o711 });
  for (const dir of [paths.home, paths.codexHome, paths.claudeHome, paths.tmp]) await ensureOwnedDir(dir, uid, gid);
  // The read-only rc files are mounted over these names: whatever the tenant left there instead
  // of a plain file (a directory, a symlink) would break or redirect that mount.
  for (const name of SHELL_RC_TARGETS) {
    const target = path.join(paths.home, name);
    const stat = await fs.lstat(target).catch(() => null);
    if (stat && !stat.isFile()) await fs.rm(target, { recursive: true, force: true });
  }
  await fs.mkdir(paths.run, { recursive: true, mode: 0o755 });
  await fs.writeFile(paths.shellRc, SHELL_RC, { mode: 0o644 });
  const fifo = await fs.lstat(paths.logFifo).catch(() => null);
  if (fifo && !fifo.isFIFO()) await fs.rm(paths.logFifo, { force: true });
  if (!fifo || !fifo.isFIFO()) await execa("mkfifo", ["-m", "0644", paths.logFifo]);
}

/** Creates a directory for uid:gid; never follows a symlink a tenant may have planted there. */
async function ensureOwnedDir(dir: string, uid: number, gid: number): Promise<void> {
  const existing = await fs.lstat(dir).catch(() => null);
  if (existing?.isDirectory()) {
    if (existing.uid !== uid || existing.gid !== gid) await fs.lchown(dir, uid, gid);
    return;
  }
  if (existing) await fs.rm(dir, { force: true });
  await fs.mkdir(dir, { mode: 0o700 });
  await fs.lchown(dir, uid, gid);
}
