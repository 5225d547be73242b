/**
 * Workspace disks left under a directory (a finished test's or doctor's temporary root, a killed
 * run's): found by the mount table and the loop devices' backing files, and released.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { TOOL_TIMEOUT_MS } from "./disk-tools.js";
import { readMounts } from "./mountinfo.js";

/** What of workspace disks is left under `dir`: the mounts below it and the loop devices whose backing file is below it. */
export async function disksLeftUnder(dir: string): Promise<{ mounts: string[]; loopDevices: string[] }> {
  const real = await fs.realpath(dir).catch(() => dir);
  const prefix = `${real}${path.sep}`;
  const mounts = [...readMounts().keys()].filter((point) => point.startsWith(prefix));
  const loopDevices: string[] = [];
  for (const name of await fs.readdir("/sys/block").catch(() => [] as string[])) {
    if (!/^loop\d+$/.test(name)) continue;
    const backing = await fs.readFile(`/sys/block/${name}/loop/backing_file`, "utf8").catch(() => "");
    if (backing.startsWith(prefix)) loopDevices.push(`/dev/${name}`);
  }
  return { mounts, loopDevices };
}

/**
 * Releases every workspace disk left under `dir` (a finished test's or doctor's temporary root, a
 * killed run's): unmounts, deepest first and lazily when busy, then detaches the loop devices still
 * backed by a file below it. Returns what it found; call disksLeftUnder afterwards to verify.
 */
export async function releaseDisksUnder(dir: string): Promise<{ mounts: string[]; loopDevices: string[] }> {
  const found = await disksLeftUnder(dir);
  for (const point of [...found.mounts].sort((a, b) => b.length - a.length)) {
    const plain = await execa("umount", [point], { reject: false, timeout: TOOL_TIMEOUT_MS });
    if (plain.exitCode !== 0) await execa("umount", ["-l", point], { reject: false, timeout: TOOL_TIMEOUT_MS });
  }
  for (const device of (await disksLeftUnder(dir)).loopDevices)
    await execa("losetup", ["-d", device], { reject: false, timeout: TOOL_TIMEOUT_MS });
  return found;
}
