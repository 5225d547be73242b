/**
 * alive-codex-sidecar as a library: the typed client Alive's server uses, and the protocol's types.
 *
 *   import { SidecarClient, ErrorCode, SidecarRpcError } from "alive-codex-sidecar";
 */
export {
  SidecarClient,
  SidecarConnectionError,
  SidecarRpcError,
  TurnRun,
  type AttachTurnOptions,
  type CallOptions,
  type ReattachOptions,
  type RunTurnOptions,
  type SidecarClientOptions,
  type TurnEventMessage,
} from "./rpc/client.js";
export {
  Method,
  type AttachTurnRequest,
  type CancelTurnRequest,
  type GetTurnRequest,
  type ListTurnsRequest,
  type EnsureWorkspaceRequest,
  type MethodName,
  type MethodParams,
  type MethodResult,
  type MethodTypes,
  type RemoveWorkspaceRequest,
  type RunTurnRequest,
  type WorkspaceLogsRequest,
} from "./rpc/methods.js";
export { TURN_EVENT, type TurnEvent, type TurnEventParams } from "./rpc/protocol.js";
export { ErrorCode, type ErrorCodeValue, type ErrorData, type RpcErrorObject } from "./errors.js";
export type {
  ContainerState,
  EnsureWorkspaceResult,
  HealthResult,
  McpServerSpec,
  NetworkMode,
  ResourceRequest,
  RunTurnParams,
  SidecarService,
  TurnInput,
  TurnHooks,
  TurnInfo,
  TurnSummary,
  TurnInputItem,
  TurnResult,
  TurnRunOptions,
  TurnStartedByEvent,
  TurnStatus,
  WorkspaceParams,
  WorkspaceSummary,
} from "./service.js";
