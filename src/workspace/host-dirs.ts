/** The workspace's host directories: HOME and TMPDIR for the tenant's uid:gid, run/ (the log FIFO and the shell rc) root's. */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import type { WorkspacePaths } from "./paths.js";
import { SHELL_RC_TARGETS } from "./spec.js";

const SHELL_RC =
  "# Managed by alive-codex-sidecar: read-only, so nothing in HOME can change what agent shells start with.\numask 022\n";

/** HOME (with .codex/ and .claude/) and TMPDIR owned by the workspace's uid:gid; run/ stays root's. */
export async function prepareWorkspaceDirs(paths: WorkspacePaths, uid: number, gid: number): Promise<void> {
  await fs.mkdir(paths.root, { recursive: true, mode: 0o711 });
  for (const dir of [paths.home, paths.codexHome, paths.claudeHome, paths.tmp]) await ensureOwnedDir(dir, uid, gid);
  // The read-only rc files are mounted over these names: whatever the tenant left there instead
  // of a plain file (a directory, a symlink) would break or redirect that mount. It is moved aside,
  // never deleted: a recursive delete as root in the tenant's tree follows a directory swapped for
  // a symlink mid-walk; rename(2) acts on the name and never follows it.
  for (const name of SHELL_RC_TARGETS) {
    const target = path.join(paths.home, name);
    const stat = await fs.lstat(target).catch(() => null);
    if (stat && !stat.isFile()) await fs.rename(target, `${target}.alive-moved-${randomBytes(4).toString("hex")}`);
  }
  await fs.mkdir(paths.run, { recursive: true, mode: 0o755 });
  // Files of turns an earlier sidecar did not see end (root's own tree: no tenant name in it).
  await fs.rm(paths.turnFiles, { recursive: true, force: true });
  await fs.writeFile(paths.shellRc, SHELL_RC, { mode: 0o644 });
  const fifo = await fs.lstat(paths.logFifo).catch(() => null);
  if (fifo && !fifo.isFIFO()) await fs.rm(paths.logFifo, { force: true });
  if (!fifo || !fifo.isFIFO()) await execa("mkfifo", ["-m", "0644", paths.logFifo]);
}

/**
 * Deletes a tree that holds the tenant's HOME and TMPDIR, as root. Not with fs.rm: it walks by path,
 * so a process of the tenant's (on the host as the same uid, or in a container started meanwhile)
 * that swaps a directory for a symlink mid-walk makes root delete what the symlink points at. GNU
 * rm walks with directory fds (openat with O_NOFOLLOW, unlinkat), so a swapped-in symlink is
 * removed as a name and never followed; --one-file-system keeps it off anything mounted inside.
 */
export async function removeTenantTree(dir: string): Promise<void> {
  await execa("rm", ["-rf", "--one-file-system", "--", dir]);
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
