/** The turn journal as a sidecar opens it at start: what an earlier sidecar left running ends as sidecar_restarted. */
import type { SidecarConfig } from "../config.js";
import type { Logger } from "../log.js";
import { TurnJournal, journalDir } from "./turn-journal.js";

/** How often ended turns past the journal's age or count are pruned. */
const JOURNAL_PRUNE_INTERVAL_MS = 10 * 60 * 1000;

/**
 * Opens the state dir's journal: turns an earlier sidecar left without a result end in it as failed
 * (sidecar_restarted; their processes are swept before any workspace is offered), and pruning starts.
 */
export async function openTurnJournal(
  config: Pick<SidecarConfig, "stateDir" | "journalTurnMaxMb" | "journalMaxAgeMs" | "journalMaxTurns">,
  log: Logger,
): Promise<TurnJournal> {
  const journal = new TurnJournal({
    dir: journalDir(config.stateDir),
    limits: {
      maxBytesPerTurn: config.journalTurnMaxMb * 1024 * 1024,
      maxAgeMs: config.journalMaxAgeMs,
      maxTurns: config.journalMaxTurns,
    },
    log,
  });
  const recovered = await journal.open({
    code: "sidecar_restarted",
    message: "the sidecar restarted while the turn ran; its processes were stopped",
  });
  for (const turn of recovered)
    log.warn("a turn an earlier sidecar left running ended as sidecar_restarted", {
      turnId: turn.turnId,
      workspaceId: turn.workspaceId,
    });
  journal.startPruning(JOURNAL_PRUNE_INTERVAL_MS);
  return journal;
}
