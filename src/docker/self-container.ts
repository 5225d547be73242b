/** Which container the sidecar runs in, as far as it can tell from inside: ids in /proc, a marker file, its hostname. */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";

const CONTAINER_ID = "[0-9a-f]{64}";
const HOST_FILES = new Set(["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]);

/**
 * The container id in /proc/self/mountinfo: the engine bind-mounts /etc/hostname, /etc/hosts and
 * /etc/resolv.conf from …/containers/<id>/ (Docker; Podman's overlay-containers/<id>/userdata too).
 * Only those mount points count: a host's own mountinfo can list other containers' directories.
 */
export function containerIdFromMountinfo(mountinfo: string): string | null {
  const pattern = new RegExp(`containers/(${CONTAINER_ID})/`);
  for (const line of mountinfo.split("\n")) {
    // Fields: id parent major:minor root mountpoint options ...
    const fields = line.split(" ");
    const root = fields[3];
    const mountPoint = fields[4];
    if (root === undefined || mountPoint === undefined || !HOST_FILES.has(mountPoint)) continue;
    const match = pattern.exec(root);
    if (match?.[1] !== undefined) return match[1];
  }
  return null;
}

/** The container id in /proc/self/cgroup (cgroup v1, or v2 without a private namespace): …/docker/<id>, docker-<id>.scope, libpod-<id>. */
export function containerIdFromCgroup(cgroup: string): string | null {
  const match = new RegExp(`(?:/docker[/-]|/libpod-)(${CONTAINER_ID})(?:\\.scope)?(?:$|/)`, "m").exec(cgroup);
  return match?.[1] ?? null;
}

/** What the sidecar can tell about its own container from inside it. */
export interface SelfContainerHints {
  /** Ids read from /proc (definite: the sidecar is in that container). */
  ids: string[];
  /** /.dockerenv or /run/.containerenv exists (a hint only: VMs and build hosts have them too). */
  marker: boolean;
  hostname: string;
}

/** What /proc, the marker files and the hostname say, read once. */
export async function readSelfContainerHints(): Promise<SelfContainerHints> {
  const read = (file: string): Promise<string> => readFile(file, "utf8").catch(() => "");
  const [mountinfo, cgroup] = await Promise.all([read("/proc/self/mountinfo"), read("/proc/self/cgroup")]);
  const ids = [containerIdFromMountinfo(mountinfo), containerIdFromCgroup(cgroup)].filter(
    (id): id is string => id !== null,
  );
  return {
    ids: [...new Set(ids)],
    marker: existsSync("/.dockerenv") || existsSync("/run/.containerenv"),
    hostname: os.hostname(),
  };
}
