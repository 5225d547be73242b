/**
 * A workspace's disk: with disks in force (ALIVE_CODEX_DISK=image, or auto where the host can), everything of the workspace under the
 * state dir (HOME, TMPDIR, the run dir, the thread bookkeeping) lives on its own ext4 filesystem, a
 * sparse image file loop-mounted at <stateDir>/workspaces/<id>. The kernel enforces the size: a
 * write past it fails with ENOSPC inside the container, and nothing outside the image notices.
 *
 *   <stateDir>/disks/<id>.img     the image: root's, mode 0600, in a root-only dir, never mounted into a container
 *
 * Why an image and not XFS project quotas: the hosts this runs on include kernels built without
 * quota support (CONFIG_XFS_QUOTA, CONFIG_QFMT_V2 unset: "quota support not available in this
 * kernel"), and an image needs only loop devices, which every Docker host has. Its costs are in
 * docs/security.md ("Disk"): one loop device and one mount per workspace with a container or kept
 * HOME, a fixed inode count, and ~0.1 s at a workspace's first ensure to make and mount it.
 *
 * Every path here is root's: the image dir and the workspace root are made by root under the
 * root-owned state dir, and the tenant's tree is only ever inside the mounted filesystem. mount(8)
 * attaches the loop device with autoclear, so unmounting detaches it.
 *
 * Here: deciding the enforcement and each workspace's attach, detach and use. A disk's size is
 * settled in disk-limits.ts, its image file made and grown in disk-image-file.ts, the host probed in
 * disk-capabilities.ts, the tools run in disk-tools.ts, and disks a run left found in disk-leftovers.ts.
 */
import { promises as fs, statfsSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { DiskHealth, DiskUsage, WorkspaceParams } from "../service.js";
import {
  decideDiskEnforcement,
  type DiskCapabilities,
  type DiskDecision,
  type DiskSetting,
} from "../shared/disk-settings.js";
import type { DiskLimits } from "../shared/limits.js";
import { probeDiskCapabilities } from "./disk-capabilities.js";
import { makeDiskImage, growDiskImage, isMountOfImage } from "./disk-image-file.js";
import { MIB, resolveDiskLimits, usageFromStatfs } from "./disk-limits.js";
import { TOOL_TIMEOUT_MS, loopDevicesOf, releaseLoopDevices, runTool } from "./disk-tools.js";
import { readMounts } from "./mountinfo.js";
import { workspacePaths } from "./paths.js";

/** How long a detach waits for the kernel to release a disk's loop device after its unmount. */
const LOOP_RELEASE_MS = 5_000;

export interface WorkspaceDisksOptions {
  stateDir: string;
  log: Logger;
  /** The operator's ALIVE_CODEX_DISK: "auto" becomes "image" or "off" at open(). */
  enforcement: DiskSetting;
  /** The host's capabilities (tests); probed when absent. */
  capabilities?: DiskCapabilities;
  /** From checkSelfMounts: the state dir's mount propagation when the sidecar runs in a container of the engine, else null. */
  stateDirPropagation?: string | null;
  /** A workspace's disk when its resources name none. */
  defaults: DiskLimits;
  /** The most a workspace's resources may name. */
  max: DiskLimits;
}

export function disksDir(stateDir: string): string {
  return path.join(stateDir, "disks");
}

export function diskImagePath(stateDir: string, workspaceId: string): string {
  return path.join(disksDir(stateDir), `${workspaceId}.img`);
}

export class WorkspaceDisks {
  private constructor(
    private readonly options: WorkspaceDisksOptions,
    private readonly decision: DiskDecision,
  ) {}

  /**
   * Settles the enforcement: "image" refuses to start (a clear error) when this host cannot make
   * workspace disks, so an operator who asked for limits never runs without them; "auto" takes
   * "image" where the host can and "off" (one warning naming what is missing) where it cannot;
   * "off" says at start-up that disks are unbounded.
   */
  static async open(options: WorkspaceDisksOptions): Promise<WorkspaceDisks> {
    const capabilities =
      options.enforcement === "off"
        ? null
        : (options.capabilities ?? (await probeDiskCapabilities(options.stateDirPropagation ?? null)));
    const decision = decideDiskEnforcement(options.enforcement, capabilities);
    if (decision.enforcement === "off") {
      // Disks made while limits were in force would be left aside, their workspaces started on empty dirs without a bound: never silently.
      const images =
        decision.requested === "auto"
          ? (await fs.readdir(disksDir(options.stateDir)).catch(() => [] as string[])).filter((name) =>
              name.endsWith(".img"),
            )
          : [];
      if (images.length > 0) {
        throw new Error(
          `ALIVE_CODEX_DISK=auto: ${images.length} workspace disk(s) in ${disksDir(options.stateDir)} were made while disk limits were in force, but this host cannot enforce them now: ${decision.missing.join("; ")}. Fix that, or set ALIVE_CODEX_DISK=off to start those workspaces without their disks (docs/security.md, Disk)`,
        );
      }
      const how =
        decision.requested === "auto"
          ? `ALIVE_CODEX_DISK=auto: this host cannot enforce them: ${decision.missing.join("; ")}`
          : "ALIVE_CODEX_DISK=off; set auto or image to bound each";
      options.log.warn(
        `workspace disks are not limited: one workspace can fill the state dir's filesystem (${how}; docs/security.md, Disk)`,
        { stateDir: options.stateDir },
      );
      return new WorkspaceDisks(options, decision);
    }
    // The mount table names mount points by their real path.
    const stateDir = await fs.realpath(options.stateDir);
    await fs.mkdir(disksDir(stateDir), { recursive: true, mode: 0o700 });
    // Images a killed sidecar was making (root's own directory: no tenant name in it).
    for (const name of await fs.readdir(disksDir(stateDir)))
      if (name.includes(".img.partial-")) await fs.rm(path.join(disksDir(stateDir), name), { force: true });
    options.log.info("workspace disks are limited: each workspace's dirs live on its own loop-mounted ext4 image", {
      stateDir,
      defaultDiskMb: options.defaults.diskMb,
      requested: decision.requested,
    });
    return new WorkspaceDisks({ ...options, stateDir }, decision);
  }

  get enforced(): boolean {
    return this.decision.enforcement === "image";
  }

  /** The disk this workspace gets, or null when disks are not limited. Throws -32006/-32602 naming the field. */
  resolve(params: Pick<WorkspaceParams, "resources">): DiskLimits | null {
    if (!this.enforced) return null;
    return resolveDiskLimits(params, this.options.defaults, this.options.max);
  }

  /**
   * Whether the workspace's disk exists and is smaller than `limits` ask: it then grows, unmounted (the
   * caller removes the container holding it and detaches it first: growing a mounted ext4 needs
   * CAP_SYS_RESOURCE, which a sidecar in a container often lacks). -32602 for a smaller disk: a disk never shrinks.
   */
  async needsGrowth(workspaceId: string, limits: DiskLimits): Promise<boolean> {
    const existing = await fs.stat(diskImagePath(this.options.stateDir, workspaceId)).catch(() => null);
    if (!existing) return false;
    if (existing.size > limits.diskMb * MIB) {
      throw new SidecarError(
        ErrorCode.invalidParams,
        `invalid resources.diskMb: workspace ${workspaceId}'s disk is ${existing.size / MIB} MiB; a disk grows but never shrinks`,
        {
          data: {
            field: "resources.diskMb",
            reason: `at least ${existing.size / MIB} (the disk's size), or remove the workspace with purgeHome`,
            received: String(limits.diskMb),
          },
        },
      );
    }
    return existing.size < limits.diskMb * MIB;
  }

  /**
   * Makes the workspace's disk mounted at its root with `limits`: made (sparse image, mkfs) and mounted
   * at its first ensure, mounted again after a reboot, grown while unmounted; idempotent, so a
   * restarted sidecar finds the mount and attaches nothing more. Refuses to mount over a workspace
   * root that holds files from before disk limits; with ALIVE_CODEX_DISK=auto such a workspace (one
   * made before auto was the default) runs on without a disk, said in a warning, and "legacy" is returned.
   */
  async attach(workspaceId: string, limits: DiskLimits): Promise<"attached" | "legacy"> {
    const { stateDir, log } = this.options;
    const root = workspacePaths(stateDir, workspaceId).root;
    const image = diskImagePath(stateDir, workspaceId);
    let mount = readMounts().get(root);
    if (mount && !(await isMountOfImage(mount, image))) {
      throw new Error(
        `${root} is a mount of ${mount.source}, not workspace ${workspaceId}'s disk ${image}: unmount it`,
      );
    }
    const existing = await fs.stat(image).catch(() => null);
    const grow = existing !== null && existing.size < limits.diskMb * MIB;
    if (mount && grow)
      throw new Error(`workspace ${workspaceId}'s disk is mounted: it grows only while unmounted (detach it first)`);
    if (!mount) {
      await fs.mkdir(path.dirname(root), { recursive: true, mode: 0o711 });
      await fs.mkdir(root, { recursive: false, mode: 0o711 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "EEXIST") throw error;
      });
      const entries = await fs.readdir(root);
      if (entries.length > 0 && !existing && this.decision.requested === "auto") {
        log.warn(
          "workspace has files from before disk limits: it runs without a disk limit until it is removed with purgeHome (ALIVE_CODEX_DISK=auto; docs/security.md, Disk)",
          { workspaceId },
        );
        return "legacy";
      }
      if (entries.length > 0) {
        throw new SidecarError(
          ErrorCode.invalidParams,
          `workspace ${workspaceId} has files from before disk limits (ALIVE_CODEX_DISK=image) in ${root}; they cannot be moved onto a disk safely`,
          {
            data: {
              field: "workspaceId",
              reason: "remove the workspace with purgeHome (or move its dirs aside) before it gets a disk",
            },
          },
        );
      }
      // A disk unmounted lazily while still held is live in the kernel: a second mount of its image would corrupt it.
      if (existing && (await loopDevicesOf(image)).length > 0) {
        throw new SidecarError(
          ErrorCode.workspaceBusy,
          `workspace ${workspaceId}'s disk is still held by a process of its removed container; try again shortly`,
          {
            data: { field: "workspaceId", reason: "the disk's previous mount has not been released yet" },
          },
        );
      }
      if (!existing) await makeDiskImage(image, limits);
      if (existing && grow) await growDiskImage(workspaceId, image, existing.size, limits, log);
      await runTool("mount", ["-t", "ext4", "-o", "loop,nosuid,nodev,discard", image, root]);
      await fs.chmod(root, 0o711);
      mount = readMounts().get(root);
      if (!mount) throw new Error(`mounted ${image} at ${root} but the mount table does not show it`);
      log.info("workspace disk mounted", { workspaceId, diskMb: limits.diskMb, device: mount.source, made: !existing });
    }
    return "attached";
  }

  /**
   * Unmounts the workspace's disk (its container is gone): the loop device goes with it. A mount still
   * held (a process of a container being torn down) is detached lazily: the kernel frees it when the
   * last user goes. With `purge`, the image is deleted: its space and inodes go back to the host.
   */
  async detach(workspaceId: string, options: { purge: boolean }): Promise<void> {
    if (!this.enforced && !options.purge) return;
    const { stateDir, log } = this.options;
    const root = workspacePaths(stateDir, workspaceId).root;
    const image = diskImagePath(stateDir, workspaceId);
    const mount = readMounts().get(root);
    let lazily = false;
    if (mount && (await isMountOfImage(mount, image))) {
      const plain = await execa("umount", [root], { reject: false, timeout: TOOL_TIMEOUT_MS });
      if (plain.exitCode !== 0) {
        log.warn("workspace disk busy; detached lazily", { workspaceId, error: plain.stderr.trim() });
        await runTool("umount", ["-l", root]);
        lazily = true;
      }
    }
    // The kernel clears an autoclear loop device after the unmount returns, not before (a CI run saw
    // it still attached right after): wait for it, releasing any device left without autoclear (a
    // mount made by hand) on the way. A lazily detached mount keeps its device until its last user goes.
    if (!lazily) {
      const left = await releaseLoopDevices(image, LOOP_RELEASE_MS);
      if (left.length > 0)
        log.warn("workspace disk's loop device still attached after unmount", { workspaceId, devices: left });
    }
    if (options.purge) await fs.rm(image, { force: true });
    if (mount) log.info("workspace disk unmounted", { workspaceId, purged: options.purge });
  }

  /** Every workspace's disk use, from one read of the mount table and a statfs per mounted disk. */
  usages(workspaceIds: string[]): Map<string, DiskUsage> {
    const out = new Map<string, DiskUsage>();
    if (!this.enforced) return out;
    const mounts = readMounts();
    for (const workspaceId of workspaceIds) {
      const root = workspacePaths(this.options.stateDir, workspaceId).root;
      if (!mounts.has(root)) continue;
      try {
        out.set(workspaceId, usageFromStatfs(statfsSync(root)));
      } catch (error) {
        this.options.log.warn("could not read a workspace disk's usage", { workspaceId, error: errorMessage(error) });
      }
    }
    return out;
  }

  health(): DiskHealth {
    const { requested, missing } = this.decision;
    if (!this.enforced)
      return { enforcement: "none", attached: 0, requested, ...(missing.length > 0 ? { missing } : {}) };
    const prefix = path.join(this.options.stateDir, "workspaces") + path.sep;
    let attached = 0;
    for (const mountPoint of readMounts().keys())
      if (mountPoint.startsWith(prefix) && !mountPoint.slice(prefix.length).includes(path.sep)) attached += 1;
    return { enforcement: "image", attached, requested };
  }
}
