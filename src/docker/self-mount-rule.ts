/**
 * The rule a sidecar running in a container must meet (self-mounts.ts says why): its state dir and
 * every workspace root bind-mounted read-write at the same absolute path as on the host, nothing
 * mounted differently below them; what breaks it, in words that say how to fix it. Pure: it reads
 * a container inspect's Mounts.
 */
import path from "node:path";
import { ErrorCode, SidecarError } from "../errors.js";

/** One entry of a container inspect's `Mounts` (only the fields the check reads). */
export interface ContainerMount {
  /** "bind", "volume", "tmpfs", … */
  Type?: string;
  /** The host path (for a volume: its _data directory on the host). */
  Source: string;
  /** The path inside the container. */
  Destination: string;
  RW?: boolean;
  /** A bind mount's propagation: "rprivate" (the engine's default), "rshared", "shared", "rslave"... */
  Propagation?: string;
}

export interface SelfMountPaths {
  stateDir: string;
  workspaceRoots: readonly string[];
}

export type MountSetting = "stateDir" | "workspaceRoots";

export type MountMismatchReason =
  /** No mount covers the path: it lives in the container's own filesystem. */
  | "not-mounted"
  /** A bind mount covers it, from a different host path. */
  | "different-source"
  /** A named volume or tmpfs covers it: not the host directory of the same path. */
  | "not-a-bind-mount"
  /** The state dir is mounted read-only; the sidecar writes HOMEs and FIFOs there. */
  | "read-only";

export interface MountMismatch {
  setting: MountSetting;
  /** The sidecar's path (the setting's value, or a mount point below it). */
  path: string;
  reason: MountMismatchReason;
  /** The mount that holds `path` in the container, when there is one. */
  mount?: ContainerMount;
  /** Where `path` is on the host according to that mount. */
  hostPath?: string;
  /** For a mount point below a setting's path: that path (the state dir or workspace root). */
  within?: string;
}

const SETTING_NAMES: Readonly<Record<MountSetting, string>> = {
  stateDir: "state dir (ALIVE_CODEX_STATE_DIR / --state-dir)",
  workspaceRoots: "workspace root (ALIVE_CODEX_WORKSPACE_ROOTS / --workspace-roots)",
};

function normalize(p: string): string {
  const clean = path.posix.normalize(p);
  return clean.length > 1 && clean.endsWith("/") ? clean.slice(0, -1) : clean;
}

/** Whether `child` is `parent` or below it (both normalized, absolute). */
function isWithin(child: string, parent: string): boolean {
  return parent === "/" || child === parent || child.startsWith(`${parent}/`);
}

/**
 * What is wrong with how `paths` are mounted, given a container inspect's `Mounts`; empty when
 * each is covered by a read-write (for the state dir) bind mount with Source === Destination,
 * its own or a parent directory's, and every mount below it has the same identity.
 */
export function findMountMismatches(mounts: readonly ContainerMount[], paths: SelfMountPaths): MountMismatch[] {
  const normalized = mounts.map((m) => ({
    mount: m,
    source: normalize(m.Source),
    destination: normalize(m.Destination),
  }));
  const found: MountMismatch[] = [];
  const seen = new Set<string>();
  const add = (mismatch: MountMismatch): void => {
    const key = `${mismatch.path}\0${mismatch.reason}`;
    if (seen.has(key)) return;
    seen.add(key);
    found.push(mismatch);
  };
  const wanted: Array<[MountSetting, string]> = [
    ["stateDir", paths.stateDir],
    ...paths.workspaceRoots.map((root): [MountSetting, string] => ["workspaceRoots", root]),
  ];
  for (const [setting, raw] of wanted) {
    const target = normalize(raw);
    // The mount that holds the path is the deepest one at or above it.
    const covering = normalized
      .filter((m) => isWithin(target, m.destination))
      .sort((a, b) => b.destination.length - a.destination.length)[0];
    if (covering === undefined) {
      add({ setting, path: target, reason: "not-mounted" });
    } else {
      const hostPath = covering.source + target.slice(covering.destination === "/" ? 0 : covering.destination.length);
      if (covering.mount.Type !== undefined && covering.mount.Type !== "bind") {
        add({ setting, path: target, reason: "not-a-bind-mount", mount: covering.mount, hostPath });
      } else if (covering.source !== covering.destination) {
        add({ setting, path: target, reason: "different-source", mount: covering.mount, hostPath });
      } else if (setting === "stateDir" && covering.mount.RW === false) {
        add({ setting, path: target, reason: "read-only", mount: covering.mount, hostPath });
      }
    }
    // A mount further down (a workspace dir mounted from elsewhere) breaks identity below the path.
    for (const nested of normalized) {
      if (nested.destination === target || !isWithin(nested.destination, target)) continue;
      const common = {
        setting,
        path: nested.destination,
        mount: nested.mount,
        hostPath: nested.source,
        within: target,
      };
      if (nested.mount.Type !== undefined && nested.mount.Type !== "bind")
        add({ ...common, reason: "not-a-bind-mount" });
      else if (nested.source !== nested.destination) add({ ...common, reason: "different-source" });
    }
  }
  return found;
}

/** One mismatch in words: the path, what is mounted there, and how to fix it. */
export function describeMountMismatch(mismatch: MountMismatch): string {
  const p = mismatch.path;
  const what =
    mismatch.within === undefined
      ? `${SETTING_NAMES[mismatch.setting]} ${p}`
      : `${p} (below the ${SETTING_NAMES[mismatch.setting]} ${mismatch.within})`;
  const mounted =
    mismatch.mount === undefined
      ? ""
      : `${mismatch.mount.Type ?? "bind"} mount of host ${mismatch.mount.Source} at ${mismatch.mount.Destination}`;
  const identity = `"${p}:${p}"`;
  switch (mismatch.reason) {
    case "not-mounted":
      return (
        `${what} is not mounted into the sidecar's container (it is in the container's own filesystem, ` +
        `while workspace containers would get the host's ${p}): bind-mount the host directory at the same absolute path, ${identity}`
      );
    case "different-source": {
      const host = mismatch.hostPath ?? mismatch.mount?.Source ?? "?";
      const retarget =
        mismatch.within === undefined ? `"${host}:${host}" with the setting changed to ${host}, or ` : "";
      return (
        `${what} is host path ${host} (${mounted}), but workspace containers would get the host's ${p}: ` +
        `mount it at the same absolute path on both sides, ${retarget}${identity}`
      );
    }
    case "not-a-bind-mount":
      return `${what} is on a ${mounted}, not a host directory of the same path: bind-mount the host directory at the same absolute path, ${identity}`;
    case "read-only":
      return `${what} is mounted read-only (${mounted}), and the sidecar writes workspace HOMEs there: mount it read-write`;
  }
}

/** The error checkSelfMounts throws: one line (the CLI prints the first line only), every mismatch in it. */
export function selfMountError(containerId: string, mismatches: readonly MountMismatch[]): SidecarError {
  const message =
    `The sidecar runs in container ${containerId.slice(0, 12)}, and the engine mounts host paths into workspace containers, ` +
    `so its paths must be bind-mounted at the same absolute paths as on the host: ` +
    `${mismatches.map(describeMountMismatch).join("; ")} (see docs/compose.md)`;
  return new SidecarError(ErrorCode.notAllowed, message, {
    data: {
      field: mismatches[0]?.setting ?? "stateDir",
      reason: "not mounted at the same absolute path as on the host",
      containerId,
      mismatches: mismatches.map((m) => ({
        setting: m.setting,
        path: m.path,
        reason: m.reason,
        hostPath: m.hostPath ?? null,
      })),
    },
  });
}

/** The propagation of the mount holding `stateDir` (the deepest at or above it); "" when none covers it or the engine names none. */
export function stateDirPropagation(mounts: readonly ContainerMount[], stateDir: string): string {
  const target = normalize(stateDir);
  const covering = mounts
    .filter((m) => isWithin(target, normalize(m.Destination)))
    .sort((a, b) => normalize(b.Destination).length - normalize(a.Destination).length)[0];
  return covering?.Propagation ?? "";
}
