/**
 * A workspace disk's image file: made sparse and formatted under a temporary name, grown while
 * unmounted, and told apart from any other mount by its loop device's backing file.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { execa } from "execa";
import type { Logger } from "../log.js";
import type { DiskLimits } from "../shared/limits.js";
import { INODE_BYTES, MIB } from "./disk-limits.js";
import { TOOL_TIMEOUT_MS, loopDevicesOf, runTool } from "./disk-tools.js";
import type { MountEntry } from "./mountinfo.js";

/** Kept for root (the sidecar's turn files and bookkeeping in run/ and threads/) when the tenant has filled the rest. */
const ROOT_RESERVE_MB = 4;

/** Made under a temporary name and renamed when whole: a sidecar killed mid-mkfs leaves no half-made disk behind its name. */
export async function makeDiskImage(image: string, limits: DiskLimits): Promise<void> {
  const partial = `${image}.partial-${randomBytes(4).toString("hex")}`;
  try {
    const handle = await fs.open(partial, "wx", 0o600);
    try {
      await handle.truncate(limits.diskMb * MIB);
    } finally {
      await handle.close();
    }
    const reservePercent = Math.min(5, Math.max(0.1, (ROOT_RESERVE_MB / limits.diskMb) * 100)).toFixed(2);
    await runTool("mkfs.ext4", [
      "-q",
      "-F",
      "-T",
      "default",
      "-b",
      "4096",
      "-I",
      String(INODE_BYTES),
      "-N",
      String(limits.diskInodes),
      "-m",
      reservePercent,
      "-E",
      "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0",
      partial,
    ]);
    await fs.rename(partial, image);
  } finally {
    await fs.rm(partial, { force: true });
  }
}

/**
 * Grows an unmounted image: the file, then the filesystem (resize2fs wants a fresh e2fsck first).
 * Never while any loop device still holds it (a lazily detached mount is still live in the kernel).
 */
export async function growDiskImage(
  workspaceId: string,
  image: string,
  fromBytes: number,
  limits: DiskLimits,
  log: Logger,
): Promise<void> {
  if ((await loopDevicesOf(image)).length > 0)
    throw new Error(
      `workspace ${workspaceId}'s disk ${image} is still attached to a loop device; it cannot grow until that is released`,
    );
  await fs.truncate(image, limits.diskMb * MIB);
  // e2fsck -p: 0 clean, 1 errors corrected; anything else stops the growth.
  const check = await execa("e2fsck", ["-f", "-p", image], { reject: false, timeout: TOOL_TIMEOUT_MS * 4 });
  if (check.exitCode !== 0 && check.exitCode !== 1)
    throw new Error(
      `e2fsck -f -p ${image} failed (exit ${check.exitCode ?? check.signal}): ${(check.stderr || check.stdout).trim().slice(0, 500)}`,
    );
  await runTool("resize2fs", [image]);
  log.info("workspace disk grown", { workspaceId, fromMb: fromBytes / MIB, toMb: limits.diskMb });
}

/** A mount at the workspace root is ours when its loop device's backing file is the workspace's image. */
export async function isMountOfImage(mount: MountEntry, image: string): Promise<boolean> {
  const device = /^\/dev\/(loop\d+)$/.exec(mount.source)?.[1];
  if (!device) return false;
  const backing = await fs.readFile(`/sys/block/${device}/loop/backing_file`, "utf8").catch(() => "");
  return backing.trim() === image;
}
