/**
 * At start-up: the turns an earlier sidecar left running (their journal has no end) are adopted
 * where their codex lived through the gap, and ended where it did not.
 *
 * A turn is adopted when its record (turn-records.ts) names the container its workspace still runs
 * and the engine still knows its codex's exec, running or exited while no sidecar ran: its output
 * is all in its files, so it ends with its real result either way. Otherwise it ends as before:
 * `container_died` when its container is gone or stopped, `sidecar_restarted` when there is no
 * record (an older sidecar's turn, or one killed before codex was launched) or its exec is unknown.
 *
 * The order matters (sidecar.ts): the workspaces are started first, so the sockets under each run
 * dir are served again before a turn is adopted; the adopted turns' workspaces are then left out of
 * the start-up sweep of orphaned turn processes, which would kill their codex.
 */
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { EnginePort } from "../docker/engine-port.js";
import type { TurnJournal, UnfinishedTurn } from "../journal/turn-journal.js";
import type { WorkspaceManager } from "../workspace/manager.js";
import { removeTurnFiles } from "../codex/turn-files.js";
import { sweepAdoptedWorkspaces, type OrphanSweepReport } from "../codex/orphan-sweep.js";
import { TurnAbandoned } from "./turn-continuity.js";
import type { Turns } from "./turns.js";
import type { TurnRecord, TurnRecords } from "./turn-records.js";

export const SIDECAR_RESTARTED = {
  code: "sidecar_restarted",
  message: "the sidecar restarted while the turn ran; its processes were stopped",
} as const;

export interface TurnAdoptionDeps {
  journal: Pick<TurnJournal, "endUnfinished">;
  records: Pick<TurnRecords, "remove">;
  workspaces: Pick<WorkspaceManager, "find">;
  engine: Pick<EnginePort, "inspectExec">;
  log: Logger;
}

/** What start-up decided for each turn an earlier sidecar left. */
export interface AdoptionPlan {
  adopt: Array<{ turn: UnfinishedTurn; record: TurnRecord }>;
  /** Turns ended (in the journal) with the code they ended with. */
  ended: Array<{ turnId: string; workspaceId: string; code: string }>;
}

/**
 * Decides, for each unfinished turn of the journal, adopt or end; ends those it does not adopt and
 * drops every record no adopted turn needs (with the turn's files).
 */
export async function planAdoption(
  deps: TurnAdoptionDeps,
  unfinished: readonly UnfinishedTurn[],
  records: readonly TurnRecord[],
): Promise<AdoptionPlan> {
  const byTurn = new Map(records.map((r) => [r.turnId, r]));
  const plan: AdoptionPlan = { adopt: [], ended: [] };
  for (const turn of unfinished) {
    const record = byTurn.get(turn.turnId);
    byTurn.delete(turn.turnId);
    const verdict = record ? await adoptable(deps, turn, record) : SIDECAR_RESTARTED;
    if (verdict === "adopt" && record) {
      plan.adopt.push({ turn, record });
      continue;
    }
    const error = verdict === "adopt" ? SIDECAR_RESTARTED : verdict;
    try {
      await deps.journal.endUnfinished(turn, error);
    } catch (cause) {
      deps.log.warn("cannot end a turn an earlier sidecar left running", {
        turnId: turn.turnId,
        error: errorMessage(cause),
      });
    }
    plan.ended.push({ turnId: turn.turnId, workspaceId: turn.workspaceId, code: error.code });
    deps.log.warn(`a turn an earlier sidecar left running ended as ${error.code}`, {
      turnId: turn.turnId,
      workspaceId: turn.workspaceId,
    });
    if (record) await dropRecord(deps, record);
  }
  // Records of turns whose end is in the journal already (the sidecar died between the two).
  for (const record of byTurn.values()) await dropRecord(deps, record);
  return plan;
}

async function adoptable(
  deps: TurnAdoptionDeps,
  turn: UnfinishedTurn,
  record: TurnRecord,
): Promise<"adopt" | { code: string; message: string }> {
  const workspace = deps.workspaces.find(record.workspaceId);
  // Not known at all: the engine may not have answered at start-up; nothing says the container died.
  if (workspace === undefined) return SIDECAR_RESTARTED;
  if (workspace.containerId !== record.containerId || workspace.state !== "running")
    return {
      code: "container_died",
      message: "the workspace container stopped or was removed while no sidecar ran; the turn could not go on",
    };
  if (turn.workspaceId !== "" && turn.workspaceId !== record.workspaceId) return SIDECAR_RESTARTED;
  const exec = await deps.engine.inspectExec(record.execId).catch(() => null);
  if (exec === null || exec.containerId !== record.containerId) return SIDECAR_RESTARTED;
  return "adopt";
}

async function dropRecord(deps: TurnAdoptionDeps, record: TurnRecord): Promise<void> {
  await deps.records.remove(record.turnId);
  const workspace = deps.workspaces.find(record.workspaceId);
  if (workspace) await removeTurnFiles(workspace.paths.tmp, { base: record.files });
}

/**
 * Start-up, once the workspaces are started and the turns built: adopts the turns that lived
 * through the gap, ends the others, and sweeps every running workspace without an adopted turn of
 * what earlier turns left. Returns the sweep's report (null when no workspace runs).
 */
export async function resumeLeftTurns(
  deps: TurnAdoptionDeps & {
    engine: Pick<EnginePort, "exec">;
    workspaces: Pick<WorkspaceManager, "list" | "get">;
    turns: Pick<Turns, "adopt">;
    /** Told what became of each turn (the metrics). */
    onOutcome?: (outcome: string) => void;
  },
  unfinished: readonly UnfinishedTurn[],
  records: readonly TurnRecord[],
): Promise<OrphanSweepReport | null> {
  const { log } = deps;
  const plan = await planAdoption(deps, unfinished, records);
  for (const { code } of plan.ended) deps.onOutcome?.(code);
  for (let i = 0; i < plan.adopt.length; i += 1) deps.onOutcome?.("adopted");
  const adopted = new Set(plan.adopt.map(({ record }) => record.workspaceId));
  const orphanSweep = await sweepAdoptedWorkspaces(deps.engine, deps.workspaces, log, adopted);
  for (const { turn, record } of plan.adopt) {
    log.info("adopting a turn an earlier sidecar left running", {
      turnId: turn.turnId,
      workspaceId: record.workspaceId,
      startedBy: record.sidecarVersion,
      lastSeq: turn.lastSeq,
    });
    deps.turns.adopt(turn, record).catch((error: unknown) => {
      if (!(error instanceof TurnAbandoned))
        log.warn("an adopted turn ended in error", { turnId: turn.turnId, error: errorMessage(error) });
    });
  }
  return orphanSweep;
}
