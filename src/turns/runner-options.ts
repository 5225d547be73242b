/** What the turn runner (turn-runner.ts) is built with. */
import type { Logger } from "../log.js";
import type { WorkspaceManager } from "../workspace/manager.js";
import type { Launchers } from "../codex/launcher.js";
import type { TurnExecutionOptions } from "./turn-execution.js";
import type { BudgetLimits } from "./turn-budget.js";
import type { TurnRecords } from "./turn-records.js";
import type { TurnSecrets } from "./turn-secrets.js";

export interface TurnRunnerOptions extends TurnExecutionOptions {
  launchers: Launchers;
  log: Logger;
  workspaces: WorkspaceManager;
  maxTurns: number;
  /** Operator directories mounted read-only in every workspace: options.additionalDirectories may name them. */
  trustedDirs: readonly string[];
  /** The operator's default budgets and ceilings. */
  budgets: BudgetLimits;
  /** Hosted tools the model proxy lets through under a restricted egress (ALIVE_CODEX_MODEL_HOSTED_TOOLS): web_search keeps codex's web search on there. */
  modelHostedTools?: readonly string[];
  /** Where the cgroup hierarchies are mounted (tests point it elsewhere); default /sys/fs/cgroup. */
  cgroupRoot?: string;
  /** Where running turns are recorded so that a later sidecar can adopt them (turn-records.ts); null: nowhere. */
  records: TurnRecords | null;
  /** The sidecar's version, kept in each turn's record. */
  sidecarVersion: string;
  /** A turn's own secret bindings (turn.run `secrets`): checked against its egress, in force while it runs. */
  turnSecrets?: TurnSecrets;
}
