/**
 * The settings of a workspace and its container: where workspaces may live and as whom they run,
 * what is mounted into them, their limits, when an idle one is paused and stopped, and their disk.
 */
import { DEFAULT_DISK, DEFAULT_RESOURCES, DISK_RANGES } from "../shared/limits.js";
import { DISK_SETTINGS, formatDiskLimits, parseDiskLimits, type DiskSetting } from "../shared/disk-settings.js";
import {
  ConfigError,
  formatResources,
  parseBoolean,
  parseDuration,
  parseOneOf,
  parsePathList,
  parseRange,
  parseResources,
} from "../shared/setting-parsers.js";
import { integers, setting, type AnySetting } from "./setting-spec.js";

/** A duration from 1 ms to 1 s, in microseconds (the kernel's CFS period bounds). */
function parseCpuPeriod(name: string, raw: string): number {
  const ms = parseDuration(name, raw);
  if (ms < 1 || ms > 1000) throw new ConfigError(name, raw, "a duration from 1ms to 1s");
  return ms * 1000;
}

/** Where a workspace may live and the ids it may run as. */
export const WORKSPACE_ID_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "workspaceRoots",
    env: "ALIVE_CODEX_WORKSPACE_ROOTS",
    flag: "--workspace-roots",
    parse: parsePathList,
    default: "/srv/alive/workspaces",
    description: "Colon-separated absolute directories; a workspacePath must resolve inside one of them.",
  }),
  setting({
    key: "uidRange",
    env: "ALIVE_CODEX_UID_RANGE",
    flag: "--uid-range",
    parse: parseRange,
    default: "10000-65533",
    description:
      "Allowed workspace uids, MIN-MAX inclusive. The default starts above 1000-9999, where most distributions number login users, so a workspace does not run as a person's account on the host. A uid serves one userId at a time: workspace.ensure refuses a uid another user's workspace holds (-32602).",
  }),
  setting({
    key: "gidRange",
    env: "ALIVE_CODEX_GID_RANGE",
    flag: "--gid-range",
    parse: parseRange,
    default: "1000-65533",
    description: "Allowed workspace gids, MIN-MAX inclusive.",
  }),
  setting({
    key: "allowRoot",
    env: "ALIVE_CODEX_ALLOW_ROOT",
    flag: "--allow-root",
    parse: parseBoolean,
    default: "false",
    boolean: true,
    description: "Allow uid/gid 0 inside the ranges. Off unless you know why you need it.",
  }),
];

/** A workspace container's mounts, limits and idle life. */
export const CONTAINER_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "trustedDirs",
    env: "ALIVE_CODEX_TRUSTED_DIRS",
    flag: "--trusted-dirs",
    parse: parsePathList,
    default: () => [],
    description:
      "Colon-separated host directories (e.g. /opt/alive/packages) mounted read-only at the same path in every workspace container, for trusted code such as Alive's MCP servers.",
  }),
  setting({
    key: "defaultResources",
    env: "ALIVE_CODEX_RESOURCES",
    flag: "--resources",
    parse: (name, raw) => parseResources(name, raw, DEFAULT_RESOURCES),
    default: formatResources(DEFAULT_RESOURCES),
    description: "Default limits per workspace container: memory (= memory+swap) in MiB, CPUs, max processes.",
  }),
  setting({
    key: "cpuPeriodUs",
    env: "ALIVE_CODEX_CPU_PERIOD",
    flag: "--cpu-period",
    parse: parseCpuPeriod,
    default: "1s",
    description:
      "Window over which a workspace's CPU limit is enforced (1ms to 1s): its quota is cpus × this. Docker's 100ms throttles codex's start-up under a 1-CPU limit (+78 ms per turn measured); 1s lets a turn start at full speed while the average stays bounded, at the cost of a tenant bursting on all cores for up to one window's quota (docs/benchmarks.md).",
  }),
  setting({
    key: "nofile",
    env: "ALIVE_CODEX_NOFILE",
    flag: "--nofile",
    parse: integers(64, 1_048_576),
    default: "4096",
    description: "Open-files ulimit (soft = hard) in workspace containers.",
  }),
  setting({
    key: "idleTimeoutMs",
    env: "ALIVE_CODEX_IDLE_TIMEOUT",
    flag: "--idle-timeout",
    parse: parseDuration,
    default: "30m",
    description:
      "Pause (freeze) a workspace container that ran no turn this long (0 = never pause nor stop): it keeps its memory and uses no CPU, and the next ensure or turn thaws it in milliseconds. Units: ms, s, m, h.",
  }),
  setting({
    key: "stopTimeoutMs",
    env: "ALIVE_CODEX_STOP_TIMEOUT",
    flag: "--stop-timeout",
    parse: parseDuration,
    default: "4h",
    description:
      "Stop a workspace container paused this much longer (0 = never), giving its memory back; the next ensure starts it again (hundreds of ms). Units: ms, s, m, h.",
  }),
];

/** How a workspace's disk is bounded, and how large it is. */
export const WORKSPACE_DISK_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "diskEnforcement",
    env: "ALIVE_CODEX_DISK",
    flag: "--disk",
    parse: (name, raw) => parseOneOf<DiskSetting>(name, raw, DISK_SETTINGS),
    default: "auto",
    description:
      'How a workspace\'s disk (its HOME, TMPDIR and run dir under the state dir) is bounded: "image" (each workspace\'s dirs live on its own ext4 image, sparse and loop-mounted, of resources.diskMb: a write past it fails with ENOSPC inside; needs root with CAP_SYS_ADMIN, e2fsprogs and usable loop devices; the sidecar refuses to start without them), "off" (not at all: one workspace can fill the state dir\'s filesystem; a warning at start) or "auto" ("image" where the host can enforce it, else "off" with a warning naming what is missing; sidecar.health says which). See docs/security.md, "Disk".',
  }),
  setting({
    key: "defaultDisk",
    env: "ALIVE_CODEX_DISK_DEFAULT",
    flag: "--disk-default",
    parse: (name, raw) => parseDiskLimits(name, raw, DEFAULT_DISK),
    default: formatDiskLimits(DEFAULT_DISK),
    description:
      "A workspace's disk when its resources name none: size in MiB and inodes (files and directories; fixed when the disk is made).",
  }),
  setting({
    key: "maxDisk",
    env: "ALIVE_CODEX_DISK_MAX",
    flag: "--disk-max",
    parse: (name, raw) => parseDiskLimits(name, raw, { diskMb: 102_400, diskInodes: 10_000_000 }),
    default: formatDiskLimits({ diskMb: 102_400, diskInodes: 10_000_000 }),
    description: `The largest resources.diskMb and resources.diskInodes a workspace may ask for (-32006 above it; ranges ${DISK_RANGES.diskMb.min}..${DISK_RANGES.diskMb.max} MiB, ${DISK_RANGES.diskInodes.min}..${DISK_RANGES.diskInodes.max} inodes).`,
  }),
];
