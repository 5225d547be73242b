/** What a turn gives back: its events (through the hooks), its result, and how turn.get, turn.list and turn.attach describe it. */
import type { ThreadEvent, ThreadItem, Usage } from "@openai/codex-sdk";

/** What the workspace container used over the turn, from its cgroup; null where the cgroup could not be read. */
export interface TurnResources {
  cpuSeconds: number | null;
  peakMemoryBytes: number | null;
  wallMs: number;
}

/** Exact token counts of the turn's model requests, as the sidecar's model proxy read them off the responses. */
export interface TurnTokens {
  input: number;
  cached: number;
  output: number;
  reasoning: number;
}

export type TurnStatus = "completed" | "failed" | "cancelled" | "timed_out";

export interface TurnResult {
  turnId: string;
  threadId: string | null;
  status: TurnStatus;
  finalResponse: string;
  items: ThreadItem[];
  /** As codex reports it: cumulative over the thread when a thread is resumed. */
  usage: Usage | null;
  /** This turn alone: usage minus the thread's previous turn (extension). */
  turnUsage: Usage | null;
  /** The workspace container's CPU time, peak memory and the turn's wall time (extension). */
  resources: TurnResources;
  /** Tokens the sidecar's model proxy counted for this turn (extension). */
  tokens: TurnTokens;
  /**
   * Completed items of the turn that `items` does not hold (extension): past the result's bounds,
   * or left out of the journal's copy to keep the turn within its journal bound. Absent when none.
   */
  itemsOmitted?: number;
  /** `finalResponse` was cut at its bound (extension). Absent when it was not. */
  finalResponseTruncated?: true;
  error?: { code: string; message: string };
}

export interface TurnHooks {
  /**
   * Called for every event in order; seq counts from 0 without gaps. The first comes before codex
   * starts. `line`, when given, is the event's turn.event notification line (shared/turn-event-line.ts),
   * made once for the journal and the wire.
   */
  onEvent(turnId: string, seq: number, event: ThreadEvent | TurnStartedByEvent, line?: string): void;
  /** Aborting it cancels the turn (status "cancelled"). */
  signal?: AbortSignal;
}

/** The sidecar's own first event of a turn, sent before codex starts (an extension to ThreadEvent). */
export interface TurnStartedByEvent {
  type: "sidecar.turn.accepted";
  turn_id: string;
  workspace_id: string;
  thread_id: string | null;
}

/** A turn as turn.list and turn.get describe it (from the running turns and the turn journal). */
export interface TurnSummary {
  turnId: string;
  workspaceId: string;
  status: "running" | TurnStatus;
  /** The seq of the turn's last event so far (-1: none). */
  lastSeq: number;
  startedAt: string;
  endedAt: string | null;
  /** Running, its turn.run client gone (onDisconnect "continue"), and no connection attached. */
  detached: boolean;
}

export interface TurnInfo extends TurnSummary {
  /** Once the turn has ended. */
  result: TurnResult | null;
}

export interface AttachTurnHooks {
  /** Called for every event with seq > afterSeq, in order, replayed then live; `line` as in TurnHooks (a replayed event comes as its line alone, `event` null). */
  onEvent(turnId: string, seq: number, event: ThreadEvent | TurnStartedByEvent | null, line?: string): void;
  /** Aborted when the attaching client goes away (the turn runs on). */
  signal: AbortSignal;
}
