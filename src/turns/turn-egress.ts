/**
 * A turn's own egress. A `workspace-write` turn without network access narrows its workspace's
 * egress to the model API for its length (docs/security.md). The policy is checked when a tunnel or
 * request is opened, so the narrowing alone closes nothing: a tunnel opened before the turn, and a
 * process an earlier turn left running that holds it (or opens a new one the moment the turn ends),
 * would carry on through the turn. So before codex starts, such a turn closes the workspace's open
 * egress tunnels (a hook the sidecar wires to the workspace's endpoints) and sweeps every process
 * earlier turns left in the container (codex/sweep.ts, LEFTOVER_SWEEP_SCRIPT).
 */
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { TurnRunOptions } from "../service.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { leftoverSweepCommand, sweptCount } from "../codex/sweep.js";

/** How long the leftover sweep may take (it takes tens of milliseconds; each round kills a generation of a forking loop). */
const LEFTOVER_SWEEP_TIMEOUT_MS = 10_000;

/** The egress a turn narrows its workspace to for its length, or null: the workspace's own. */
export function turnEgress(
  options: Pick<TurnRunOptions, "sandboxMode" | "networkAccessEnabled"> | undefined,
): EgressPolicy | null {
  return options?.sandboxMode === "workspace-write" && options.networkAccessEnabled !== true ? "model" : null;
}

/**
 * Whether the turn's egress takes away something its workspace's own allows: then what the
 * workspace holds open from before must be closed before codex starts. A workspace already limited
 * to the model API (network "none", egress "model") has nothing open to close.
 */
export function narrowsEgress(workspace: EgressPolicy, turn: EgressPolicy | null): boolean {
  return turn === "model" && workspace !== "model";
}

export interface EgressNarrowingOptions {
  engine: EnginePort;
  /**
   * Closes the workspace's open egress tunnels and requests (WorkspaceEndpoints.closeTunnels);
   * returns how many. Absent: nothing is closed by the sidecar (the sweep still ends the processes
   * that hold them, which closes their tunnels as their connections end).
   */
  onEgressNarrowed?: (workspaceId: string) => number | Promise<number>;
}

/** The tunnels could not be closed: the turn fails (`internal`) before codex starts rather than run with them open. */
export class EgressNarrowingError extends Error {
  override readonly name = "EgressNarrowingError";
}

/**
 * Before codex starts in a turn that narrows its workspace's egress (record.turnEgress is already
 * in force, so nothing can open a tunnel it refuses): closes the workspace's open tunnels, then
 * sweeps what earlier turns left running. Logs the counts. A sweep that fails is logged and the turn
 * goes on: what survives it can open nothing the narrowed policy refuses, and its tunnels are closed.
 * Tunnels that cannot be closed throw EgressNarrowingError.
 */
export async function closeBeforeNarrowedTurn(
  options: EgressNarrowingOptions,
  record: WorkspaceRecord,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  const { workspaceId, uid, gid } = record.params;
  let tunnels: number | null = null;
  if (options.onEgressNarrowed) {
    try {
      tunnels = await options.onEgressNarrowed(workspaceId);
    } catch (error) {
      log.error("could not close the workspace's egress tunnels before a turn that narrows its egress", {
        error: errorMessage(error),
      });
      throw new EgressNarrowingError(
        `the workspace's open egress tunnels could not be closed before its egress was narrowed to the model API: ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }
  let processes: number | null = null;
  try {
    const result = await runCommand(options.engine, record.containerId, {
      cmd: leftoverSweepCommand(),
      user: `${uid}:${gid}`,
      signal: AbortSignal.any([signal, AbortSignal.timeout(LEFTOVER_SWEEP_TIMEOUT_MS)]),
    });
    processes = sweptCount(result.stdout);
  } catch (error) {
    if (!signal.aborted)
      log.warn("could not sweep what earlier turns left before a turn that narrows its egress", {
        error: errorMessage(error),
      });
  }
  log.info("egress narrowed to the model API for the turn: what earlier turns left open was closed", {
    tunnels,
    processes,
  });
}
