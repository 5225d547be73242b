/**
 * The OCI runtime of a workspace container (runc, gVisor's runsc, ...): the one a workspace asks for
 * (workspace.ensure `runtime`), else the operator's ALIVE_CODEX_RUNTIME, else the engine's default.
 * A runtime a workspace asks for must be on the operator's allowlist (ALIVE_CODEX_RUNTIMES, plus the
 * operator's own default) and registered with the engine (`docker info` Runtimes); anything else is
 * -32006 before anything is made. The resolved name is part of the container's spec (and so its
 * identity): a workspace whose runtime changes gets a new container once it is idle.
 */
import type { EnginePort, EngineRuntimes } from "../docker/engine-port.js";
import { ErrorCode, SidecarError } from "../errors.js";

/**
 * How many host tasks a sandbox needs per task of the workspace's under gVisor: runsc's ptrace
 * platform backs the sandbox's processes with host stub processes (a thread in each per Sentry
 * thread that ran it) and keeps a pool of them, all in the container's pids cgroup. Measured here:
 * 317 host tasks after one codex turn, 629 after twelve, a few dozen processes inside. At the plain
 * limit (512 by default) the Sentry's next clone fails with EAGAIN and it panics, killing the
 * container mid-turn (exit code 2).
 */
export const GVISOR_PIDS_FACTOR = 16;

/** Is `runtime` gVisor? The sidecar takes a runtime named runsc, or runsc-<variant>, for gVisor. */
export function isGvisorRuntime(runtime: string | null | undefined): boolean {
  return runtime === "runsc" || (typeof runtime === "string" && runtime.startsWith("runsc-"));
}

/** The engine's PidsLimit for a workspace allowed `pids` processes under `runtime` (docs/runtimes.md). */
export function hostPidsLimit(runtime: string | null, pids: number): number {
  return isGvisorRuntime(runtime) ? pids * GVISOR_PIDS_FACTOR : pids;
}

/**
 * Whether an idle container under `runtime` may be paused. Not under gVisor: `runsc pause` of a
 * ptrace sandbox hung here (20 minutes, holding the engine's lock on the container until its
 * processes were killed), where the same pause had thawed fine in an earlier run. An idle runsc
 * workspace is stopped instead (idle-reaper.ts), and the next ensure or turn starts it again.
 */
export function canPause(runtime: string | null): boolean {
  return !isGvisorRuntime(runtime);
}

export type { EngineRuntimes };

export interface RuntimePolicy {
  /** ALIVE_CODEX_RUNTIME: the runtime of a workspace that names none; null: the engine's default. */
  defaultRuntime: string | null;
  /** ALIVE_CODEX_RUNTIMES: the runtimes a workspace may ask for (the operator's default is always one). */
  allowed: readonly string[];
}

/** The runtimes a workspace may ask for under this policy, in the operator's order. */
export function allowedRuntimes(policy: RuntimePolicy): string[] {
  const out = [...policy.allowed];
  if (policy.defaultRuntime !== null && !out.includes(policy.defaultRuntime)) out.push(policy.defaultRuntime);
  return out;
}

function refuse(runtime: string, reason: string, allowed: string[]): SidecarError {
  return new SidecarError(ErrorCode.notAllowed, `runtime ${JSON.stringify(runtime)} not allowed: ${reason}`, {
    data: { field: "runtime", reason, received: runtime, allowed },
  });
}

/**
 * The runtime a workspace's container runs under (pure). `requested` is the workspace's own choice;
 * absent, the operator's default, else the engine's. Throws -32006 naming the runtime and the ones
 * that would do: for a runtime off the allowlist, or one the engine does not list.
 */
export function resolveRuntime(requested: string | undefined, policy: RuntimePolicy, engine: EngineRuntimes): string {
  const allowed = allowedRuntimes(policy);
  const usable = allowed.filter((name) => engine.names.includes(name));
  if (requested !== undefined && !allowed.includes(requested)) {
    throw refuse(requested, `the operator allows ${allowed.join(", ")} (ALIVE_CODEX_RUNTIMES)`, usable);
  }
  const runtime = requested ?? policy.defaultRuntime ?? engine.defaultRuntime;
  if (!engine.names.includes(runtime)) {
    const origin = requested === undefined ? "the operator's default (ALIVE_CODEX_RUNTIME) " : "";
    throw refuse(
      runtime,
      `${origin}is not registered with the Docker engine, which lists ${engine.names.join(", ")} (scripts/install-runsc.sh registers runsc)`,
      usable,
    );
  }
  return runtime;
}

/** The engine's runtimes, asked once and again only when a runtime is missing (one registered since). */
export class WorkspaceRuntimes {
  #engine: EngineRuntimes | null = null;

  constructor(
    private readonly engine: Pick<EnginePort, "runtimes">,
    private readonly policy: RuntimePolicy,
  ) {}

  /** The runtime for a workspace that asks for `requested` (or nothing); -32006 as resolveRuntime says. */
  async resolve(requested: string | undefined, signal?: AbortSignal): Promise<string> {
    const cached = this.#engine;
    if (cached !== null) {
      try {
        return resolveRuntime(requested, this.policy, cached);
      } catch (error) {
        // Off the allowlist: asking the engine again changes nothing.
        if (requested !== undefined && !allowedRuntimes(this.policy).includes(requested)) throw error;
      }
    }
    this.#engine = await this.engine.runtimes(signal);
    return resolveRuntime(requested, this.policy, this.#engine);
  }
}
