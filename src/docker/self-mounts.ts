/**
 * When the sidecar itself runs in a container (compose/compose.yaml), the engine mounts *host*
 * paths into workspace containers: the workspacePath, and HOME/TMPDIR/run under the state dir
 * (src/workspace/spec.ts). Those are the paths the sidecar sees, so they must be the same
 * directories on the host: the state dir and every workspace root have to be bind-mounted into
 * the sidecar's container at the same absolute path (Source === Destination). Otherwise the
 * sidecar writes one directory and the workspace containers get another, silently.
 *
 * checkSelfMounts finds the sidecar's own container, inspects it through the engine and refuses
 * to start on a mismatch. Outside a container it does nothing; the pure parts (the mount rule,
 * the container id parsers) are exported for unit tests.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";

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

export interface CheckSelfMountsOptions {
  /** The sidecar's container (id or name); found from /proc and the hostname when absent. */
  containerId?: string;
  /** Told when the sidecar seems to run in a container the engine does not know (the check is skipped). */
  log?: Logger;
  signal?: AbortSignal;
}

/** Deadline of the inspect calls, together. */
const INSPECT_TIMEOUT_MS = 15_000;

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
  const normalized = mounts.map((m) => ({ mount: m, source: normalize(m.Source), destination: normalize(m.Destination) }));
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
      const common = { setting, path: nested.destination, mount: nested.mount, hostPath: nested.source, within: target };
      if (nested.mount.Type !== undefined && nested.mount.Type !== "bind") add({ ...common, reason: "not-a-bind-mount" });
      else if (nested.source !== nested.destination) add({ ...common, reason: "different-source" });
    }
  }
  return found;
}

/** One mismatch in words: the path, what is mounted there, and how to fix it. */
export function describeMountMismatch(mismatch: MountMismatch): string {
  const p = mismatch.path;
  const what = mismatch.within === undefined ? `${SETTING_NAMES[mismatch.setting]} ${p}` : `${p} (below the ${SETTING_NAMES[mismatch.setting]} ${mismatch.within})`;
  const mounted = mismatch.mount === undefined ? "" : `${mismatch.mount.Type ?? "bind"} mount of host ${mismatch.mount.Source} at ${mismatch.mount.Destination}`;
  const identity = `"${p}:${p}"`;
  switch (mismatch.reason) {
    case "not-mounted":
      return (
        `${what} is not mounted into the sidecar's container (it is in the container's own filesystem, ` +
        `while workspace containers would get the host's ${p}): bind-mount the host directory at the same absolute path, ${identity}`
      );
    case "different-source": {
      const host = mismatch.hostPath ?? mismatch.mount?.Source ?? "?";
      const retarget = mismatch.within === undefined ? `"${host}:${host}" with the setting changed to ${host}, or ` : "";
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
      mismatches: mismatches.map((m) => ({ setting: m.setting, path: m.path, reason: m.reason, hostPath: m.hostPath ?? null })),
    },
  });
}

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

async function readSelfContainerHints(): Promise<SelfContainerHints> {
  const read = (file: string): Promise<string> => readFile(file, "utf8").catch(() => "");
  const [mountinfo, cgroup] = await Promise.all([read("/proc/self/mountinfo"), read("/proc/self/cgroup")]);
  const ids = [containerIdFromMountinfo(mountinfo), containerIdFromCgroup(cgroup)].filter((id): id is string => id !== null);
  return {
    ids: [...new Set(ids)],
    marker: existsSync("/.dockerenv") || existsSync("/run/.containerenv"),
    hostname: os.hostname(),
  };
}

interface SelfContainer {
  id: string;
  mounts: ContainerMount[];
}

async function inspectContainer(docker: Docker, ref: string, signal: AbortSignal): Promise<(SelfContainer & { hostname: string }) | null> {
  const info = await withDocker(`inspect the sidecar's own container ${ref}`, () => docker.getContainer(ref).inspect({ abortSignal: signal }), { ignore: [404] });
  if (info === undefined) return null;
  return { id: info.Id, hostname: info.Config?.Hostname ?? "", mounts: (info.Mounts ?? []) as ContainerMount[] };
}

/**
 * The hostname is the container's short id unless it was set; a container found under it counts
 * only when its id starts with it or it has that hostname. Null (after a warning) when none does,
 * or, with no id from /proc, when the engine cannot be asked.
 */
async function findByHostname(docker: Docker, hints: SelfContainerHints, signal: AbortSignal, log: Logger | undefined): Promise<SelfContainer | null> {
  let found: Awaited<ReturnType<typeof inspectContainer>>;
  try {
    found = await inspectContainer(docker, hints.hostname, signal);
  } catch (error) {
    if (hints.ids.length > 0) throw error;
    log?.warn("cannot ask the Docker engine about the sidecar's own container: mount check skipped", { hostname: hints.hostname, error: errorMessage(error) });
    return null;
  }
  if (found !== null && (found.id.startsWith(hints.hostname) || found.hostname === hints.hostname)) return found;
  // Only a marker file (/.dockerenv): most likely a VM or build host that has one, not a container; no need to warn.
  const level = hints.ids.length > 0 ? "warn" : "debug";
  log?.[level]("the sidecar seems to run in a container the Docker engine does not know: mount check skipped", { containerIds: hints.ids, hostname: hints.hostname });
  return null;
}

/**
 * If the sidecar runs in a container of the engine it drives, makes sure its state dir and
 * workspace roots are bind-mounted there at the same absolute paths as on the host; throws a
 * SidecarError (-32006) naming each path, what is mounted there and how to fix it.
 * Does nothing outside a container. Skips the check (with a warning to `log`) when only a marker
 * file hints at a container and the engine knows no container of that hostname (a VM, a build
 * host, or a container of another engine).
 */
/** What checkSelfMounts saw of the sidecar's own container: none (not in a container the engine knows), or its id and the state dir's mount propagation. */
export interface SelfMounts {
  containerId: string | null;
  /** The propagation of the bind mount holding the state dir ("" when the engine names none); null outside a container. */
  stateDirPropagation: string | null;
}

/** The propagation of the mount holding `stateDir` (the deepest at or above it); "" when none covers it or the engine names none. */
export function stateDirPropagation(mounts: readonly ContainerMount[], stateDir: string): string {
  const target = normalize(stateDir);
  const covering = mounts.filter((m) => isWithin(target, normalize(m.Destination))).sort((a, b) => normalize(b.Destination).length - normalize(a.Destination).length)[0];
  return covering?.Propagation ?? "";
}

export async function checkSelfMounts(docker: Docker, paths: SelfMountPaths, options: CheckSelfMountsOptions = {}): Promise<SelfMounts> {
  const signal = AbortSignal.any([AbortSignal.timeout(INSPECT_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])]);
  let self: SelfContainer | null = null;
  if (options.containerId !== undefined) {
    self = await inspectContainer(docker, options.containerId, signal);
    if (self === null) {
      throw new SidecarError(ErrorCode.notAllowed, `The sidecar's container ${options.containerId} is not known to the Docker engine it drives: give the id or name of the container the sidecar runs in`, {
        data: { field: "containerId", reason: "no such container", containerId: options.containerId },
      });
    }
  } else {
    const hints = await readSelfContainerHints();
    if (hints.ids.length === 0 && !hints.marker) return { containerId: null, stateDirPropagation: null };
    for (const id of hints.ids) {
      self = await inspectContainer(docker, id, signal);
      if (self !== null) break;
    }
    if (self === null) self = await findByHostname(docker, hints, signal, options.log);
    if (self === null) return { containerId: null, stateDirPropagation: null };
  }
  const mismatches = findMountMismatches(self.mounts, paths);
  if (mismatches.length > 0) throw selfMountError(self.id, mismatches);
  return { containerId: self.id, stateDirPropagation: stateDirPropagation(self.mounts, paths.stateDir) };
}
