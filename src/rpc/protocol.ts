/**
 * What every method shares: the turn.event notification and the context a method handler gets.
 * The methods themselves, one descriptor each, are in ./methods.ts.
 */
import type { ThreadEvent } from "@openai/codex-sdk";
import type { Logger } from "../log.js";
import type { SidecarService, TurnStartedByEvent } from "../service.js";
import type { WorkspacePolicy } from "../policy/workspace-policy.js";

/** The notification sent for every event of a turn.run in flight, on the connection that asked (and turn.attach). */
export { TURN_EVENT, turnEventLine } from "../shared/turn-event-line.js";

export type TurnEvent = ThreadEvent | TurnStartedByEvent;

export interface TurnEventParams {
  turnId: string;
  seq: number;
  event: TurnEvent;
}

/** What a handler gets for one request. */
export interface MethodContext {
  service: SidecarService;
  policy: WorkspacePolicy;
  log: Logger;
  /** Aborted when the request's connection goes away (see docs/protocol.md, disconnect policy). */
  signal: AbortSignal;
  /** Sends a notification on the request's connection; a no-op once it is closed. */
  notify(method: string, params: unknown): void;
  /** Sends a line already serialised (one JSON-RPC message, newline-terminated); a no-op once closed. */
  notifyLine?(line: string): void;
}
