/**
 * The RPC surface: method names, their wire params and results (PROTOCOL.md plus the extensions in
 * docs/protocol.md), and the context a method handler gets. Handlers live in ./handlers/.
 */
import type { ThreadEvent } from "@openai/codex-sdk";
import type { Logger } from "../log.js";
import type {
  EnsureWorkspaceResult,
  HealthResult,
  RunTurnParams,
  SidecarService,
  TurnResult,
  TurnStartedByEvent,
  WorkspaceParams,
  WorkspaceSummary,
} from "../service.js";
import type { WorkspacePolicy } from "../workspace/policy.js";

export const Method = {
  health: "sidecar.health",
  ensureWorkspace: "workspace.ensure",
  listWorkspaces: "workspace.list",
  removeWorkspace: "workspace.remove",
  /** Extension: the workspace container's log. */
  workspaceLogs: "workspace.logs",
  runTurn: "turn.run",
  cancelTurn: "turn.cancel",
} as const;

export type MethodName = (typeof Method)[keyof typeof Method];

/** The notification sent for every event of a turn.run in flight, on the connection that asked. */
export const TURN_EVENT = "turn.event";

export type TurnEvent = ThreadEvent | TurnStartedByEvent;

export interface TurnEventParams {
  turnId: string;
  seq: number;
  event: TurnEvent;
}

/** workspace.ensure params as sent on the wire (workspacePath not yet resolved). */
export type EnsureWorkspaceRequest = WorkspaceParams;

/**
 * turn.run params as sent on the wire. The workspace.ensure fields may ride along at the top level;
 * when `workspacePath` is present the workspace is ensured before the turn starts.
 */
export type RunTurnRequest = Omit<RunTurnParams, "workspace"> & Partial<Omit<WorkspaceParams, "workspaceId">>;

export interface RemoveWorkspaceRequest {
  workspaceId: string;
  purgeHome?: boolean;
}

export interface WorkspaceLogsRequest {
  workspaceId: string;
  tail?: number;
}

export interface CancelTurnRequest {
  turnId: string;
}

/** Params and result of every method, for the typed client. */
export interface MethodTypes {
  "sidecar.health": { params: Record<string, never>; result: HealthResult };
  "workspace.ensure": { params: EnsureWorkspaceRequest; result: EnsureWorkspaceResult };
  "workspace.list": { params: Record<string, never>; result: { workspaces: WorkspaceSummary[] } };
  "workspace.remove": { params: RemoveWorkspaceRequest; result: { removed: boolean } };
  "workspace.logs": { params: WorkspaceLogsRequest; result: { logs: string } };
  "turn.run": { params: RunTurnRequest; result: TurnResult };
  "turn.cancel": { params: CancelTurnRequest; result: { cancelled: boolean } };
}

export type MethodParams<M extends MethodName> = MethodTypes[M]["params"];
export type MethodResult<M extends MethodName> = MethodTypes[M]["result"];

/** What a handler gets for one request. */
export interface MethodContext {
  service: SidecarService;
  policy: WorkspacePolicy;
  log: Logger;
  /** Aborted when the request's connection goes away (see docs/protocol.md, disconnect policy). */
  signal: AbortSignal;
  /** Sends a notification on the request's connection; a no-op once it is closed. */
  notify(method: string, params: unknown): void;
}

export type MethodHandler = (params: unknown, context: MethodContext) => Promise<unknown>;

/** Methods whose in-flight requests are cancelled as soon as their client stops sending (EOF). */
export const CANCEL_ON_EOF: ReadonlySet<string> = new Set<string>([Method.runTurn]);
