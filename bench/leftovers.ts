/**
 * What of a bench run is left on the host once it has cleaned up: mounts under its root (as
 * /proc/mounts lists them) and loop devices whose backing file is under it (as `losetup -a` lists
 * them). A workspace disk the bench forgot, or one deleted while mounted, shows in both.
 */
import { readFile } from "node:fs/promises";
import { execa } from "execa";

export interface Leftovers {
  mounts: string[];
  loopDevices: string[];
}

/** /proc/mounts escapes space, tab, newline and backslash in paths as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_all, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points under `root` in a /proc/mounts text ("source target fstype options 0 0" per line). */
export function mountsUnder(root: string, procMounts: string): string[] {
  const prefix = root.endsWith("/") ? root : `${root}/`;
  const points = procMounts
    .split("\n")
    .map((line) => line.split(" ")[1])
    .filter((field): field is string => field !== undefined)
    .map(unescape)
    .filter((point) => point === root || point.startsWith(prefix));
  return [...new Set(points)];
}

/**
 * Loop devices backed by a file under `root` in `losetup -a` output: "/dev/loop3: [2049]:1234 (/tmp/x/disks/a.img)",
 * with " (deleted)" inside the parentheses when the file was deleted while attached.
 */
export function loopDevicesUnder(root: string, losetupList: string): string[] {
  const prefix = root.endsWith("/") ? root : `${root}/`;
  const devices: string[] = [];
  for (const line of losetupList.split("\n")) {
    const match = /^(\/dev\/loop\d+):.*?\((.+)\)\s*$/.exec(line.trim());
    if (match === null) continue;
    const backing = (match[2] ?? "").replace(/ \(deleted\)$/, "");
    if (backing.startsWith(prefix)) devices.push(match[1] as string);
  }
  return [...new Set(devices)];
}

/** Reads /proc/mounts and runs `losetup -a` (no loop device at all when losetup is missing: nothing to detach either). */
export async function leftoversUnder(root: string): Promise<Leftovers> {
  const procMounts = await readFile("/proc/mounts", "utf8").catch(() => "");
  const losetup = await execa("losetup", ["-a"], { reject: false, timeout: 10_000 });
  return {
    mounts: mountsUnder(root, procMounts),
    loopDevices: loopDevicesUnder(root, losetup.exitCode === 0 ? losetup.stdout : ""),
  };
}

/**
 * One line for the bench's summary: what the sections left (`found`, which the backstop then
 * released) and what is left even after that (`still`).
 */
export function describeLeftovers(runId: string, found: Leftovers, still: Leftovers): string {
  const list = (l: Leftovers): string =>
    [...l.mounts.map((m) => `mount ${m}`), ...l.loopDevices.map((d) => `loop device ${d}`)].join(", ");
  const count = (l: Leftovers): number => l.mounts.length + l.loopDevices.length;
  if (count(found) === 0)
    return `cleanup: nothing of run ${runId} is left (losetup -a and /proc/mounts show none of its workspace disks)`;
  const after =
    count(still) === 0 ? "released by the bench's backstop" : `the backstop could not release ${list(still)}`;
  return `cleanup: LEFT by run ${runId} after its sections removed their workspaces: ${list(found)} (${after})`;
}
