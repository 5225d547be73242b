/** The mount table (/proc/self/mountinfo), read to know whether a workspace's disk is mounted without asking a tool. */
import { readFileSync } from "node:fs";

export interface MountEntry {
  /** Where it is mounted, unescaped. */
  mountPoint: string;
  fsType: string;
  /** What is mounted: for a loop mount, /dev/loopN. */
  source: string;
}

/** The kernel escapes space, tab, newline and backslash in paths as \ooo octal. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_all, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Parses mountinfo(5): "36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/loop3 rw". The optional
 * fields before " - " vary in number; the separator is the first lone "-" after the sixth field.
 */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields.length < 10) continue;
    const separator = fields.indexOf("-", 6);
    if (separator === -1 || separator + 2 >= fields.length) continue;
    entries.push({
      mountPoint: unescapeMountField(fields[4] ?? ""),
      fsType: fields[separator + 1] ?? "",
      source: unescapeMountField(fields[separator + 2] ?? ""),
    });
  }
  return entries;
}

/** The mounts in force, the last one at each mount point winning (it is the one visible there). */
export function readMounts(): Map<string, MountEntry> {
  const mounts = new Map<string, MountEntry>();
  for (const entry of parseMountInfo(readFileSync("/proc/self/mountinfo", "utf8"))) mounts.set(entry.mountPoint, entry);
  return mounts;
}
