/** The turn journal as a sidecar opens it at start, with the turns an earlier sidecar left running (adopted or ended: turns/turn-adoption.ts). */
import type { SidecarConfig } from "../config.js";
import type { Logger } from "../log.js";
import { TurnJournal, journalDir, type UnfinishedTurn } from "./turn-journal.js";

/** How often ended turns past the journal's age or count are pruned. */
const JOURNAL_PRUNE_INTERVAL_MS = 10 * 60 * 1000;

/**
 * Opens the state dir's journal and starts pruning. The turns an earlier sidecar left without a
 * result are returned as they are: the caller adopts or ends each (turns/turn-adoption.ts).
 */
export async function openTurnJournal(
  config: Pick<SidecarConfig, "stateDir" | "journalTurnMaxMb" | "journalMaxAgeMs" | "journalMaxTurns">,
  log: Logger,
): Promise<{ journal: TurnJournal; unfinished: UnfinishedTurn[] }> {
  const journal = new TurnJournal({
    dir: journalDir(config.stateDir),
    limits: {
      maxBytesPerTurn: config.journalTurnMaxMb * 1024 * 1024,
      maxAgeMs: config.journalMaxAgeMs,
      maxTurns: config.journalMaxTurns,
    },
    log,
  });
  const unfinished = await journal.openLeavingUnfinished();
  await journal.prune();
  journal.startPruning(JOURNAL_PRUNE_INTERVAL_MS);
  return { journal, unfinished };
}
