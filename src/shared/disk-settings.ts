/** The operator's disk settings (issue 14): how workspace disks are enforced, their default and their ceiling. */
import { DISK_RANGES, type DiskLimits } from "./limits.js";
import { ConfigError, parseInteger } from "./setting-parsers.js";

/** "off": no disk limit (a warning at start); "image": each workspace's dirs live on its own loop-mounted filesystem image. */
export type DiskEnforcement = "off" | "image";

export const DISK_ENFORCEMENTS: readonly DiskEnforcement[] = ["off", "image"];

/** "diskMb=4096,diskInodes=100000": the named limits replace those of `base`, within DISK_RANGES. */
export function parseDiskLimits(setting: string, raw: string, base: Readonly<DiskLimits>): DiskLimits {
  const out = { ...base };
  for (const part of raw.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [name = "", value = ""] = part.split("=", 2).map((s) => s.trim());
    if (!Object.hasOwn(DISK_RANGES, name)) throw new ConfigError(setting, raw, "a list of diskMb=N, diskInodes=N separated by commas");
    const key = name as keyof DiskLimits;
    out[key] = parseInteger(`${setting} ${key}`, value, DISK_RANGES[key].min, DISK_RANGES[key].max);
  }
  return out;
}

export function formatDiskLimits(limits: Readonly<DiskLimits>): string {
  return `diskMb=${limits.diskMb},diskInodes=${limits.diskInodes}`;
}
