/** The operator's disk settings: how workspace disks are enforced, their default and their ceiling. */
import { DISK_RANGES, type DiskLimits } from "./limits.js";
import type { DiskHealth } from "../service.js";
import { ConfigError, parseInteger } from "./setting-parsers.js";

/** The enforcement in force: "off": no disk limit (a warning at start); "image": each workspace's dirs live on its own loop-mounted filesystem image. */
export type DiskEnforcement = "off" | "image";

/** ALIVE_CODEX_DISK: an enforcement, or "auto" (the default): "image" where this host can enforce it, else "off" with a warning. */
export type DiskSetting = DiskEnforcement | "auto";

export const DISK_SETTINGS: readonly DiskSetting[] = ["auto", "off", "image"];

/** What the host offers for workspace disks, probed once at start-up (workspace/disk-capabilities.ts probeDiskCapabilities). */
export interface DiskCapabilities {
  /** The sidecar runs as uid 0. */
  root: boolean;
  /** CAP_SYS_ADMIN is in its effective set (mount(2) needs it; root in a default container lacks it). */
  capSysAdmin: boolean;
  /** The tools an image needs that are not on PATH. */
  missingTools: string[];
  /** /dev/loop-control: opened read-write ("ok"), absent, or refused (a container without the device cgroup rule). */
  loopControl: "ok" | "missing" | "denied";
  /**
   * When the sidecar runs in a container of the engine it drives: the propagation of the state
   * dir's bind mount (a disk mounted inside reaches the engine only through "shared"/"rshared").
   * Null outside such a container.
   */
  stateDirPropagation: string | null;
  /**
   * The AppArmor label the sidecar runs under, as /proc/self/attr says it ("docker-default (enforce)",
   * "unconfined"); null or absent where AppArmor is off. Docker's default profile denies mount(2)
   * whatever the capabilities, so a container under it cannot mount a disk even with CAP_SYS_ADMIN.
   */
  appArmor?: string | null;
}

const E2FSPROGS_TOOLS = new Set(["mkfs.ext4", "e2fsck", "resize2fs"]);

/** What keeps this host from enforcing workspace disks, each naming how to get it; empty when it can. */
export function diskProblems(caps: DiskCapabilities): string[] {
  const problems: string[] = [];
  if (!caps.root) problems.push("the sidecar is not root (run it as root: mounting needs CAP_SYS_ADMIN)");
  else if (!caps.capSysAdmin)
    problems.push("the sidecar lacks CAP_SYS_ADMIN (in a container: cap_add SYS_ADMIN; docs/security.md, Disk)");
  const missing = (packageName: string): string[] =>
    caps.missingTools.filter((tool) => E2FSPROGS_TOOLS.has(tool) === (packageName === "e2fsprogs"));
  for (const packageName of ["e2fsprogs", "util-linux"]) {
    const tools = missing(packageName);
    if (tools.length > 0)
      problems.push(`${tools.join(", ")} ${tools.length === 1 ? "is" : "are"} not installed (install ${packageName})`);
  }
  if (caps.loopControl === "missing")
    problems.push(
      "/dev/loop-control is missing (load the loop module: modprobe loop; in a container: pass the loop devices in, docs/security.md, Disk)",
    );
  if (caps.loopControl === "denied")
    problems.push(
      "/dev/loop-control cannot be opened (in a container: a device cgroup rule 'b 7:* rwm' and 'c 10:237 rwm', docs/security.md, Disk)",
    );
  if (caps.appArmor && /^docker-default\b.*\(enforce\)/.test(caps.appArmor)) {
    problems.push(
      `the sidecar runs under the AppArmor profile ${caps.appArmor.trim()}, which denies mount(2) (in a container: security_opt apparmor=unconfined; docs/compose.md)`,
    );
  }
  if (caps.stateDirPropagation !== null && !/^r?shared$/.test(caps.stateDirPropagation)) {
    problems.push(
      `the state dir is bind-mounted into the sidecar's container with propagation ${caps.stateDirPropagation || "unset"}: a disk mounted there would not reach the engine (bind-mount it with bind-propagation=rshared, docs/security.md, Disk)`,
    );
  }
  return problems;
}

/** The enforcement start-up settles on: in force, whether "auto" chose it, and what was missing when "auto" fell back to "off". */
export interface DiskDecision {
  enforcement: DiskEnforcement;
  requested: DiskSetting;
  /** For "auto" settled on "off": what the host lacks (diskProblems). Empty otherwise. */
  missing: string[];
}

/**
 * "off" stays off and "auto" becomes "image" when the host can enforce it, else "off" naming what is
 * missing. "image" on a host that cannot is refused (thrown): an operator who asked for limits never runs without them.
 */
export function decideDiskEnforcement(requested: DiskSetting, caps: DiskCapabilities | null): DiskDecision {
  if (requested === "off") return { enforcement: "off", requested, missing: [] };
  if (caps === null) throw new Error(`ALIVE_CODEX_DISK=${requested} needs the host's capabilities probed`);
  const problems = diskProblems(caps);
  if (problems.length === 0) return { enforcement: "image", requested, missing: [] };
  if (requested === "image") {
    throw new Error(
      `ALIVE_CODEX_DISK=image: this host cannot make workspace disks: ${problems.join("; ")}. Fix that, or set ALIVE_CODEX_DISK=auto (limits where the host allows) or off (docs/security.md, Disk)`,
    );
  }
  return { enforcement: "off", requested, missing: problems };
}

/** "diskMb=4096,diskInodes=100000": the named limits replace those of `base`, within DISK_RANGES. */
export function parseDiskLimits(setting: string, raw: string, base: Readonly<DiskLimits>): DiskLimits {
  const out = { ...base };
  for (const part of raw
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name = "", value = ""] = part.split("=", 2).map((s) => s.trim());
    if (!Object.hasOwn(DISK_RANGES, name))
      throw new ConfigError(setting, raw, "a list of diskMb=N, diskInodes=N separated by commas");
    const key = name as keyof DiskLimits;
    out[key] = parseInteger(`${setting} ${key}`, value, DISK_RANGES[key].min, DISK_RANGES[key].max);
  }
  return out;
}

export function formatDiskLimits(limits: Readonly<DiskLimits>): string {
  return `diskMb=${limits.diskMb},diskInodes=${limits.diskInodes}`;
}

/** One line for sidecar.health's disk entry (alive-codex health, doctor): the enforcement in force and, for ALIVE_CODEX_DISK=auto, why. */
export function describeDiskHealth(disk: DiskHealth): string {
  const requested = disk.requested ?? (disk.enforcement === "image" ? "image" : "off");
  if (disk.enforcement === "image") {
    return `limited (loop-mounted image per workspace, ${disk.attached} attached${requested === "auto" ? "; chosen automatically: ALIVE_CODEX_DISK=auto" : ""})`;
  }
  if (requested === "auto")
    return `NOT LIMITED (ALIVE_CODEX_DISK=auto: this host cannot enforce disk limits: ${(disk.missing ?? []).join("; ") || "no reason given"})`;
  return "NOT LIMITED (ALIVE_CODEX_DISK=off)";
}
