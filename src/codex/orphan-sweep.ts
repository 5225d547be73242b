/**
 * At start-up, before any workspace is offered: a sidecar that died mid-turn (SIGKILL, OOM, a
 * crash) left that turn's codex and everything it started running in the container, unseen (moby#9098:
 * the exec outlives its client). Every running workspace is swept as cancel sweeps a turn (sweep.ts),
 * for any turn id: at start-up no turn of this sidecar runs yet, so every turn process is an orphan.
 */
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceManager } from "../workspace/manager.js";
import { SWEEP_SCRIPT } from "./sweep.js";

/** The sweep script matches the marker as a grep pattern (`grep -x`): this one is every turn's. */
const ANY_TURN_PATTERN = ".*";

export interface OrphanSweepTarget {
  workspaceId: string;
  containerId: string;
  uid: number;
  gid: number;
}

export interface OrphanSweepReport {
  workspaces: number;
  processes: number;
  failures: number;
  ms: number;
}

export function orphanSweepCommand(): string[] {
  return ["/bin/sh", "-c", SWEEP_SCRIPT, "alive-sweep", ANY_TURN_PATTERN, "/proc", "kill"];
}

/** Sweeps every target, a few at a time; a workspace that cannot be swept is logged, never fatal. */
export async function sweepOrphanTurns(
  engine: Pick<EnginePort, "exec">,
  targets: readonly OrphanSweepTarget[],
  log: Logger,
  concurrency = 8,
): Promise<OrphanSweepReport> {
  const started = performance.now();
  let processes = 0;
  let failures = 0;
  const queue = [...targets];
  const worker = async (): Promise<void> => {
    for (let target = queue.shift(); target !== undefined; target = queue.shift()) {
      try {
        const result = await runCommand(engine, target.containerId, {
          cmd: orphanSweepCommand(),
          user: `${target.uid}:${target.gid}`,
          signal: AbortSignal.timeout(10_000),
        });
        const swept = Number(/swept (\d+)/.exec(result.stdout)?.[1] ?? 0);
        processes += swept;
        if (swept > 0)
          log.warn("swept the processes of a turn an earlier sidecar left running", {
            workspaceId: target.workspaceId,
            containerId: target.containerId,
            swept,
          });
      } catch (error) {
        failures += 1;
        log.error("could not sweep a workspace for turns an earlier sidecar left running", {
          workspaceId: target.workspaceId,
          error: errorMessage(error),
        });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, targets.length) }, worker));
  return { workspaces: targets.length, processes, failures, ms: Math.round(performance.now() - started) };
}

/**
 * Sweeps the running adopted workspaces of every turn process an earlier sidecar left (none of ours
 * runs yet), before the service is offered. Null when the engine was unreachable: nothing was adopted.
 */
export async function sweepAdoptedWorkspaces(
  engine: Pick<EnginePort, "exec">,
  workspaces: Pick<WorkspaceManager, "list" | "get">,
  log: Logger,
  /** Workspaces whose turn is adopted: its processes are not orphans. */
  except: ReadonlySet<string> = new Set(),
): Promise<OrphanSweepReport | null> {
  const running = workspaces.list().filter((w) => w.state === "running" && !except.has(w.workspaceId));
  if (running.length === 0) return null;
  const targets = running.map((w) => {
    const { uid, gid } = workspaces.get(w.workspaceId).params;
    return { workspaceId: w.workspaceId, containerId: w.containerId, uid, gid };
  });
  const report = await sweepOrphanTurns(engine, targets, log);
  log.info("swept adopted workspaces of turns an earlier sidecar left running", { ...report });
  return report;
}
