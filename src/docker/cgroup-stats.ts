/**
 * A container's CPU time and memory as its cgroup counts them, read straight from the cgroup files
 * (no engine round trip: cheap enough to poll every 250 ms while a turn runs).
 *
 *   cgroup v1: <root>/cpuacct/<path>/cpuacct.usage (ns) and <root>/memory/<path>/memory.max_usage_in_bytes
 *              (the peak, reset by writing 0), memory.usage_in_bytes (now)
 *   cgroup v2: <root>/<path>/cpu.stat `usage_usec` and memory.peak (the container's lifetime peak,
 *              not resettable before Linux 6.12), memory.current (now)
 *
 * <path> is docker/<id> under the cgroupfs driver and system.slice/docker-<id>.scope under the
 * systemd driver; a combined v1 hierarchy may be mounted as cpu,cpuacct. Page cache counts as memory,
 * as the kernel's limit counts it.
 */
import { promises as fs } from "node:fs";
import path from "node:path";

export const CGROUP_ROOT = "/sys/fs/cgroup";

/** cpuacct.usage: CPU time in nanoseconds. */
export function parseCpuacctUsage(text: string): number | null {
  const value = text.trim();
  return /^\d+$/.test(value) ? Number(value) : null;
}

/** cgroup v2 cpu.stat: the `usage_usec` line, in nanoseconds. */
export function parseCpuStatUsage(text: string): number | null {
  const match = /^usage_usec (\d+)$/m.exec(text);
  return match ? Number(match[1]) * 1000 : null;
}

/** A memory file holding one byte count (memory.peak, memory.max_usage_in_bytes, …). */
export function parseByteCount(text: string): number | null {
  const value = text.trim();
  return /^\d+$/.test(value) ? Number(value) : null;
}

/** Where a container's cgroup may be, relative to a hierarchy: cgroupfs first, then systemd. */
export function containerCgroupPaths(containerId: string): string[] {
  return [`docker/${containerId}`, `system.slice/docker-${containerId}.scope`];
}

export interface CgroupFiles {
  version: 1 | 2;
  /** cpuacct.usage (v1) or cpu.stat (v2). */
  cpu: string;
  /** memory.max_usage_in_bytes (v1) or memory.peak (v2); null when absent (v2 before Linux 5.19). */
  peak: string | null;
  /** memory.usage_in_bytes (v1) or memory.current (v2). */
  current: string;
}

const exists = (file: string): Promise<boolean> =>
  fs.access(file).then(
    () => true,
    () => false,
  );

/** Finds the container's cgroup files under `root`, or null (not this host's cgroup, or the container is gone). */
export async function locateCgroupFiles(containerId: string, root: string = CGROUP_ROOT): Promise<CgroupFiles | null> {
  const relatives = containerCgroupPaths(containerId);
  if (await exists(path.join(root, "cgroup.controllers"))) {
    for (const relative of relatives) {
      const dir = path.join(root, relative);
      if (!(await exists(path.join(dir, "cpu.stat")))) continue;
      const peak = path.join(dir, "memory.peak");
      return {
        version: 2,
        cpu: path.join(dir, "cpu.stat"),
        peak: (await exists(peak)) ? peak : null,
        current: path.join(dir, "memory.current"),
      };
    }
    return null;
  }
  for (const relative of relatives) {
    const memoryDir = path.join(root, "memory", relative);
    if (!(await exists(path.join(memoryDir, "memory.usage_in_bytes")))) continue;
    for (const hierarchy of ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]) {
      const cpu = path.join(root, hierarchy, relative, "cpuacct.usage");
      if (await exists(cpu))
        return {
          version: 1,
          cpu,
          peak: path.join(memoryDir, "memory.max_usage_in_bytes"),
          current: path.join(memoryDir, "memory.usage_in_bytes"),
        };
    }
  }
  return null;
}

async function readNumber(file: string | null, parse: (text: string) => number | null): Promise<number | null> {
  if (file === null) return null;
  try {
    return parse(await fs.readFile(file, "utf8"));
  } catch {
    return null;
  }
}

/** Reads one container's cgroup; every read is null once the files are gone (the container died). */
export class ContainerCgroup {
  constructor(readonly files: CgroupFiles) {}

  static async locate(containerId: string, root?: string): Promise<ContainerCgroup | null> {
    const files = await locateCgroupFiles(containerId, root);
    return files ? new ContainerCgroup(files) : null;
  }

  /** CPU time used since the container started, in nanoseconds. */
  cpuNs(): Promise<number | null> {
    return readNumber(this.files.cpu, this.files.version === 1 ? parseCpuacctUsage : parseCpuStatUsage);
  }

  memoryNow(): Promise<number | null> {
    return readNumber(this.files.current, parseByteCount);
  }

  peakMemory(): Promise<number | null> {
    return readNumber(this.files.peak, parseByteCount);
  }

  /** v1 only: restarts the peak from the current usage. False where it cannot (v2, a read-only cgroupfs). */
  async resetPeak(): Promise<boolean> {
    if (this.files.version !== 1 || this.files.peak === null) return false;
    try {
      await fs.writeFile(this.files.peak, "0");
      return true;
    } catch {
      return false;
    }
  }
}
