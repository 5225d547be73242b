/**
 * The RPC surface: one descriptor per method (docs/protocol.md).
 * A descriptor keeps together what vscode-jsonrpc's RequestType<P, R, E> does: the method's name, its
 * params as a client sends them and its result; and, for the server, the parser that validates the
 * params at the edge and the handler that calls the service. The server dispatches through
 * METHOD_TABLE; the typed client takes its types from here (a type-only import).
 */
import type {
  EnsureWorkspaceParams,
  EnsureWorkspaceResult,
  HealthResult,
  RunTurnParams,
  TurnInfo,
  TurnResult,
  TurnSummary,
  WorkspaceParams,
  WorkspaceSummary,
} from "../service.js";
import type { WorkspacePolicy } from "../policy/workspace-policy.js";
import {
  parseCancelTurnParams,
  parseEnsureWorkspaceParams,
  parseRemoveWorkspaceParams,
  parseRunTurnParams,
  parseWorkspaceLogsParams,
} from "./params.js";
import { parseAttachTurnParams, parseGetTurnParams, parseListTurnsParams } from "./turn-params.js";
import { TURN_EVENT, type MethodContext, type TurnEventParams } from "./protocol.js";

export interface MethodDescriptor<Name extends string, Params, Parsed, Result> {
  readonly name: Name;
  /** Validates the params as sent (-32602 or -32006, naming the field) into what the handler takes. */
  parse(raw: unknown, policy: WorkspacePolicy): Parsed | Promise<Parsed>;
  handle(params: Parsed, context: MethodContext): Promise<Result>;
  /** Its requests in flight are cancelled as soon as their client stops sending (EOF). */
  readonly cancelOnEof?: boolean;
  /** Type only, never set: the params a client sends. */
  readonly params?: Params;
}

/**
 * A descriptor whose client-side params are `Params`; the name, the parsed params and the result
 * are inferred from the parser and the handler.
 */
function method<Params>() {
  return <const Name extends string, Parsed, Result>(
    descriptor: MethodDescriptor<Name, Params, Parsed, Result>,
  ): MethodDescriptor<Name, Params, Parsed, Result> => descriptor;
}

/** For methods that take no params: any given are ignored. */
const ignoreParams = (): void => undefined;

/** workspace.ensure params as sent on the wire (workspacePath not yet resolved). */
export type EnsureWorkspaceRequest = EnsureWorkspaceParams;

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

export interface AttachTurnRequest {
  turnId: string;
  /** Only events with a larger seq are sent; absent: all. */
  afterSeq?: number;
}

export interface GetTurnRequest {
  turnId: string;
}

export interface ListTurnsRequest {
  workspaceId?: string;
  status?: TurnSummary["status"];
}

export const METHODS = {
  health: method<Record<string, never>>()({
    name: "sidecar.health",
    parse: ignoreParams,
    handle: (_params, { service, signal }): Promise<HealthResult> => service.health(signal),
  }),
  ensureWorkspace: method<EnsureWorkspaceRequest>()({
    name: "workspace.ensure",
    parse: parseEnsureWorkspaceParams,
    handle: (params, { service, signal }): Promise<EnsureWorkspaceResult> => service.ensureWorkspace(params, signal),
  }),
  listWorkspaces: method<Record<string, never>>()({
    name: "workspace.list",
    parse: ignoreParams,
    handle: (_params, { service, signal }): Promise<{ workspaces: WorkspaceSummary[] }> =>
      service.listWorkspaces(signal),
  }),
  removeWorkspace: method<RemoveWorkspaceRequest>()({
    name: "workspace.remove",
    parse: parseRemoveWorkspaceParams,
    handle: (params, { service, signal }): Promise<{ removed: boolean }> => service.removeWorkspace(params, signal),
  }),
  /** Extension: the workspace container's log. */
  workspaceLogs: method<WorkspaceLogsRequest>()({
    name: "workspace.logs",
    parse: parseWorkspaceLogsParams,
    handle: (params, { service, signal }): Promise<{ logs: string }> => service.workspaceLogs(params, signal),
  }),
  /** A turn's events go out as turn.event notifications on the connection that asked. */
  runTurn: method<RunTurnRequest>()({
    name: "turn.run",
    cancelOnEof: true,
    parse: parseRunTurnParams,
    handle: (params, context): Promise<TurnResult> =>
      context.service.runTurn(params, {
        signal: context.signal,
        onEvent: (turnId, seq, event, line) => sendTurnEvent(context, turnId, seq, event, line),
      }),
  }),
  cancelTurn: method<CancelTurnRequest>()({
    name: "turn.cancel",
    parse: parseCancelTurnParams,
    handle: (params, { service }): Promise<{ cancelled: boolean }> => service.cancelTurn(params),
  }),
  /** Extension: a turn's events after afterSeq (from its journal, then live) as turn.event notifications, then its result. */
  attachTurn: method<AttachTurnRequest>()({
    name: "turn.attach",
    parse: parseAttachTurnParams,
    handle: (params, context): Promise<TurnResult> =>
      context.service.attachTurn(params, {
        signal: context.signal,
        onEvent: (turnId, seq, event, line) => sendTurnEvent(context, turnId, seq, event, line),
      }),
  }),
  /** Extension: a running or journaled turn's status, last seq and (once ended) result. */
  getTurn: method<GetTurnRequest>()({
    name: "turn.get",
    parse: parseGetTurnParams,
    handle: (params, { service }): Promise<TurnInfo> => service.getTurn(params),
  }),
  /** Extension: the running and journaled turns, optionally of one workspace or in one status. */
  listTurns: method<ListTurnsRequest>()({
    name: "turn.list",
    parse: parseListTurnsParams,
    handle: (params, { service }): Promise<{ turns: TurnSummary[] }> => service.listTurns(params),
  }),
} as const;

/** A turn.event notification: the line the service made (once, for the journal too) when it gave one, else serialised here. */
function sendTurnEvent(
  context: MethodContext,
  turnId: string,
  seq: number,
  event: TurnEventParams["event"] | null,
  line: string | undefined,
): void {
  if (line !== undefined && context.notifyLine) {
    context.notifyLine(line);
    return;
  }
  const eventParams: TurnEventParams = {
    turnId,
    seq,
    event: event ?? (JSON.parse(line ?? "null") as { params: TurnEventParams }).params.event,
  };
  context.notify(TURN_EVENT, eventParams);
}

type Descriptors = (typeof METHODS)[keyof typeof METHODS];

export type MethodName = Descriptors["name"];
type DescriptorOf<M extends MethodName> = Extract<Descriptors, { name: M }>;
export type MethodParams<M extends MethodName> = NonNullable<DescriptorOf<M>["params"]>;
export type MethodResult<M extends MethodName> = Awaited<ReturnType<DescriptorOf<M>["handle"]>>;

/** Params and result of every method, for the typed client. */
export type MethodTypes = { [M in MethodName]: { params: MethodParams<M>; result: MethodResult<M> } };

/** Every method's wire name, by its descriptor's key: Method.runTurn is "turn.run". */
export const Method = Object.fromEntries(
  Object.entries(METHODS).map(([key, descriptor]) => [key, descriptor.name]),
) as {
  readonly [K in keyof typeof METHODS]: (typeof METHODS)[K]["name"];
};

/** A method as the server runs it: parse, then handle. */
export interface ServedMethod {
  readonly name: string;
  readonly cancelOnEof: boolean;
  run(params: unknown, context: MethodContext): Promise<unknown>;
}

function serve(descriptor: MethodDescriptor<string, unknown, unknown, unknown>): ServedMethod {
  return {
    name: descriptor.name,
    cancelOnEof: descriptor.cancelOnEof ?? false,
    run: async (params, context) => descriptor.handle(await descriptor.parse(params, context.policy), context),
  };
}

/** Every method the server answers, by wire name. */
export const METHOD_TABLE: ReadonlyMap<string, ServedMethod> = new Map(
  Object.values(METHODS).map((descriptor) => [descriptor.name, serve(descriptor)]),
);
