/**
 * Killing a turn's processes in its container (codex/sweep.ts chooses them: codex, by the turn
 * marker, and everything started at or after it). A turn stopped while its codex was being launched
 * can be swept before the launcher has exec'd codex: then the sweep finds nothing, so it is repeated
 * while the launcher's exec still runs.
 */
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { sweepCommand } from "../codex/sweep.js";

export interface SweepTarget {
  engine: Pick<EnginePort, "exec" | "inspectExec">;
  record: Pick<WorkspaceRecord, "containerId" | "params">;
  turnId: string;
  log: Logger;
}

/** One sweep; resolves with how many processes it killed (0 when it could not run: logged). */
export async function sweepTurn(target: SweepTarget): Promise<number> {
  const { uid, gid } = target.record.params;
  try {
    const result = await runCommand(target.engine, target.record.containerId, {
      cmd: sweepCommand(target.turnId),
      user: `${uid}:${gid}`,
      signal: AbortSignal.timeout(10_000),
    });
    const match = /swept (\d+)/.exec(result.stdout);
    return match ? Number(match[1]) : 0;
  } catch (error) {
    target.log.warn("could not sweep the turn's processes", { error: errorMessage(error) });
    return 0;
  }
}

/** Sweeps until codex's exec has ended: up to 10 sweeps, a second apart. */
export async function sweepUntilExited(target: SweepTarget, execId: string): Promise<number> {
  let swept = 0;
  for (let round = 0; round < 10; round += 1) {
    swept += await sweepTurn(target);
    const state = await target.engine.inspectExec(execId).catch(() => null);
    if (state === null || !state.running) return swept;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return swept;
}
