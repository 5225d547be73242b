/**
 * The sidecar's operations, independent of transport. The RPC layer (src/rpc/) validates params
 * into these types and calls a SidecarService; src/sidecar.ts wires the real implementation. The
 * types it takes and gives live in service-types/, by what they describe, and are all exported here.
 */
import type { EnsureWorkspaceResult, WorkspaceSummary } from "./service-types/workspace.js";
import type { EnsureWorkspaceParams } from "./service-types/secrets.js";
import type { RunTurnParams } from "./service-types/turn-params.js";
import type { AttachTurnHooks, TurnHooks, TurnInfo, TurnResult, TurnSummary } from "./service-types/turn-results.js";
import type { HealthResult } from "./service-types/health.js";

export * from "./service-types/workspace.js";
export * from "./service-types/isolation.js";
export * from "./service-types/turn-params.js";
export * from "./service-types/turn-results.js";
export * from "./service-types/health.js";
export * from "./service-types/secrets.js";

export interface SidecarService {
  health(signal?: AbortSignal): Promise<HealthResult>;
  ensureWorkspace(params: EnsureWorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult>;
  listWorkspaces(signal?: AbortSignal): Promise<{ workspaces: WorkspaceSummary[] }>;
  removeWorkspace(
    params: { workspaceId: string; purgeHome?: boolean },
    signal?: AbortSignal,
  ): Promise<{ removed: boolean }>;
  /** The workspace container's log (what `docker logs` shows), last `tail` lines. */
  workspaceLogs(params: { workspaceId: string; tail?: number }, signal?: AbortSignal): Promise<{ logs: string }>;
  runTurn(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult>;
  cancelTurn(params: { turnId: string }): Promise<{ cancelled: boolean }>;
  /** The turn's events after afterSeq (journal, then live), then its result; -32004 for an unknown turn. */
  attachTurn(params: { turnId: string; afterSeq?: number }, hooks: AttachTurnHooks): Promise<TurnResult>;
  getTurn(params: { turnId: string }): Promise<TurnInfo>;
  listTurns(params: { workspaceId?: string; status?: TurnSummary["status"] }): Promise<{ turns: TurnSummary[] }>;
}
