/**
 * How big a workspace's disk is: what its request or the operator's default gives, within the
 * operator's ceiling and what ext4 can hold; and its use as the tenant sees it.
 */
import { ErrorCode, SidecarError, notAllowed } from "../errors.js";
import type { DiskUsage, WorkspaceParams } from "../service.js";
import type { DiskLimits } from "../shared/limits.js";

export const MIB = 1024 * 1024;
/** ext4's inode size here: each inode costs this much of the disk, made at mkfs. */
export const INODE_BYTES = 256;
/** At most this share of a disk goes to inode tables when the inode count is the operator's default. */
const DEFAULT_BYTES_PER_INODE = 16 * 1024;

/**
 * The disk a workspace gets: its request, else the operator's default (whose inode count is capped
 * at one per 16 KiB so a small disk is not all inode tables). Above the operator's ceiling: -32006;
 * more inodes than the disk can hold: -32602. Both name the field.
 */
export function resolveDiskLimits(
  params: Pick<WorkspaceParams, "resources">,
  defaults: DiskLimits,
  max: DiskLimits,
): DiskLimits {
  const diskMb = params.resources?.diskMb ?? defaults.diskMb;
  if (diskMb > max.diskMb)
    throw notAllowed(
      "resources.diskMb",
      `${diskMb} MiB is above the operator's ceiling of ${max.diskMb} MiB (ALIVE_CODEX_DISK_MAX)`,
    );
  const requested = params.resources?.diskInodes;
  if (requested !== undefined && requested > max.diskInodes) {
    throw notAllowed(
      "resources.diskInodes",
      `${requested} is above the operator's ceiling of ${max.diskInodes} (ALIVE_CODEX_DISK_MAX)`,
    );
  }
  const fit = Math.floor((diskMb * MIB) / 4 / INODE_BYTES);
  if (requested !== undefined && requested > fit) {
    throw new SidecarError(
      ErrorCode.invalidParams,
      `invalid resources.diskInodes: ${requested} inodes need ${Math.ceil((requested * INODE_BYTES) / MIB)} MiB of inode tables, more than a quarter of a ${diskMb} MiB disk (at most ${fit})`,
      {
        data: {
          field: "resources.diskInodes",
          reason: `at most ${fit} for resources.diskMb ${diskMb}`,
          received: String(requested),
        },
      },
    );
  }
  const diskInodes = requested ?? Math.min(defaults.diskInodes, Math.floor((diskMb * MIB) / DEFAULT_BYTES_PER_INODE));
  return { diskMb, diskInodes };
}

/** What statfs says of a mounted workspace disk, as the tenant sees it (root's reserve left out of the limit). */
export function usageFromStatfs(stats: {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}): DiskUsage {
  const usedBlocks = stats.blocks - stats.bfree;
  return {
    limitBytes: (usedBlocks + stats.bavail) * stats.bsize,
    usedBytes: usedBlocks * stats.bsize,
    limitInodes: stats.files,
    usedInodes: stats.files - stats.ffree,
  };
}
