/**
 * When the sidecar itself runs in a container (compose/compose.yaml), the engine mounts *host*
 * paths into workspace containers: the workspacePath, and HOME/TMPDIR/run under the state dir
 * (src/workspace/spec.ts). Those are the paths the sidecar sees, so they must be the same
 * directories on the host: the state dir and every workspace root have to be bind-mounted into
 * the sidecar's container at the same absolute path (Source === Destination). Otherwise the
 * sidecar writes one directory and the workspace containers get another, silently.
 *
 * checkSelfMounts finds the sidecar's own container, inspects it through the engine and refuses
 * to start on a mismatch. Outside a container it does nothing. The mount rule is in
 * self-mount-rule.ts, how the sidecar finds its own container's id in self-container.ts.
 */
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";
import { readSelfContainerHints, type SelfContainerHints } from "./self-container.js";
import {
  findMountMismatches,
  selfMountError,
  stateDirPropagation,
  type ContainerMount,
  type SelfMountPaths,
} from "./self-mount-rule.js";

export interface CheckSelfMountsOptions {
  /** The sidecar's container (id or name); found from /proc and the hostname when absent. */
  containerId?: string;
  /** Told when the sidecar seems to run in a container the engine does not know (the check is skipped). */
  log?: Logger;
  signal?: AbortSignal;
}

/** Deadline of the inspect calls, together. */
const INSPECT_TIMEOUT_MS = 15_000;

interface SelfContainer {
  id: string;
  mounts: ContainerMount[];
}

async function inspectContainer(
  docker: Docker,
  ref: string,
  signal: AbortSignal,
): Promise<(SelfContainer & { hostname: string }) | null> {
  const info = await withDocker(
    `inspect the sidecar's own container ${ref}`,
    () => docker.getContainer(ref).inspect({ abortSignal: signal }),
    { ignore: [404] },
  );
  if (info === undefined) return null;
  return { id: info.Id, hostname: info.Config?.Hostname ?? "", mounts: (info.Mounts ?? []) as ContainerMount[] };
}

/**
 * The hostname is the container's short id unless it was set; a container found under it counts
 * only when its id starts with it or it has that hostname. Null (after a warning) when none does,
 * or, with no id from /proc, when the engine cannot be asked.
 */
async function findByHostname(
  docker: Docker,
  hints: SelfContainerHints,
  signal: AbortSignal,
  log: Logger | undefined,
): Promise<SelfContainer | null> {
  let found: Awaited<ReturnType<typeof inspectContainer>>;
  try {
    found = await inspectContainer(docker, hints.hostname, signal);
  } catch (error) {
    if (hints.ids.length > 0) throw error;
    log?.warn("cannot ask the Docker engine about the sidecar's own container: mount check skipped", {
      hostname: hints.hostname,
      error: errorMessage(error),
    });
    return null;
  }
  if (found !== null && (found.id.startsWith(hints.hostname) || found.hostname === hints.hostname)) return found;
  // Only a marker file (/.dockerenv): most likely a VM or build host that has one, not a container; no need to warn.
  const level = hints.ids.length > 0 ? "warn" : "debug";
  log?.[level]("the sidecar seems to run in a container the Docker engine does not know: mount check skipped", {
    containerIds: hints.ids,
    hostname: hints.hostname,
  });
  return null;
}

/** What checkSelfMounts saw of the sidecar's own container: none (not in a container the engine knows), or its id and the state dir's mount propagation. */
export interface SelfMounts {
  containerId: string | null;
  /** The propagation of the bind mount holding the state dir ("" when the engine names none); null outside a container. */
  stateDirPropagation: string | null;
}

/**
 * If the sidecar runs in a container of the engine it drives, makes sure its state dir and
 * workspace roots are bind-mounted there at the same absolute paths as on the host; throws a
 * SidecarError (-32006) naming each path, what is mounted there and how to fix it.
 * Does nothing outside a container. Skips the check (with a warning to `log`) when only a marker
 * file hints at a container and the engine knows no container of that hostname (a VM, a build
 * host, or a container of another engine).
 */
export async function checkSelfMounts(
  docker: Docker,
  paths: SelfMountPaths,
  options: CheckSelfMountsOptions = {},
): Promise<SelfMounts> {
  const signal = AbortSignal.any([
    AbortSignal.timeout(INSPECT_TIMEOUT_MS),
    ...(options.signal ? [options.signal] : []),
  ]);
  let self: SelfContainer | null = null;
  if (options.containerId !== undefined) {
    self = await inspectContainer(docker, options.containerId, signal);
    if (self === null) {
      throw new SidecarError(
        ErrorCode.notAllowed,
        `The sidecar's container ${options.containerId} is not known to the Docker engine it drives: give the id or name of the container the sidecar runs in`,
        {
          data: { field: "containerId", reason: "no such container", containerId: options.containerId },
        },
      );
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
