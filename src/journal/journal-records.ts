/**
 * The lines of a turn's journal file (`<stateDir>/journal/<turnId>.jsonl`), one JSON object each:
 *
 *   {"k":"start","turnId","workspaceId","startedAt"}           first, when the turn is accepted
 *   {"jsonrpc":"2.0","method":"turn.event","params":{"turnId","seq","event"}}
 *                                                              every event, in seq order, the very
 *                                                              line the connection sent
 *   {"k":"end","turnId","workspaceId","startedAt","endedAt","status","lastSeq","result"}   last
 *
 * A turn whose events outgrow the per-turn bound gets, in place of the event that would cross it,
 * the marker event `{ type: "sidecar.journal.truncated", max_bytes }` under that event's seq; later
 * events are not kept (the end line always is). A file without an end line is a turn that is running,
 * or one an earlier sidecar left when it died (recovered at start-up).
 */
import type { TurnResult, TurnStatus, TurnSummary } from "../service.js";

export type { TurnSummary };
export type TurnPhase = TurnSummary["status"];

export interface StartRecord {
  k: "start";
  turnId: string;
  workspaceId: string;
  startedAt: string;
}

export interface EventRecord {
  k: "event";
  seq: number;
  event: unknown;
}

export interface EndRecord {
  k: "end";
  turnId: string;
  workspaceId: string;
  startedAt: string;
  endedAt: string;
  status: TurnStatus;
  lastSeq: number;
  result: TurnResult;
}

export type JournalRecord = StartRecord | EventRecord | EndRecord;

/** The event written in place of the first one past the per-turn bound. */
export const TRUNCATED_EVENT_TYPE = "sidecar.journal.truncated";

export const JOURNAL_SUFFIX = ".jsonl";

/** One line back into a record; null for a line that is not one (a torn last line of a killed sidecar). */
export function parseRecord(line: string): JournalRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const record = value as { k?: unknown; turnId?: unknown; method?: unknown; params?: { seq?: unknown; event?: unknown } };
  if (record.method === "turn.event" && typeof record.params?.seq === "number") return { k: "event", seq: record.params.seq, event: record.params.event };
  if ((record.k === "start" || record.k === "end") && typeof record.turnId === "string") return value as JournalRecord;
  return null;
}

export function summaryOfEnd(end: EndRecord): TurnSummary {
  return { turnId: end.turnId, workspaceId: end.workspaceId, status: end.status, lastSeq: end.lastSeq, startedAt: end.startedAt, endedAt: end.endedAt, detached: false };
}

/**
 * Which ended turns pruning removes: those that ended before `now - maxAgeMs`, then the oldest
 * past `maxTurns`. Pure, for the unit tests.
 */
export function turnsToPrune(ended: readonly TurnSummary[], now: number, maxAgeMs: number, maxTurns: number): string[] {
  const byEnd = [...ended].sort((a, b) => Date.parse(a.endedAt ?? a.startedAt) - Date.parse(b.endedAt ?? b.startedAt));
  const doomed = new Set<string>();
  for (const turn of byEnd) if (maxAgeMs > 0 && now - Date.parse(turn.endedAt ?? turn.startedAt) > maxAgeMs) doomed.add(turn.turnId);
  const kept = byEnd.filter((turn) => !doomed.has(turn.turnId));
  for (const turn of kept.slice(0, Math.max(0, kept.length - maxTurns))) doomed.add(turn.turnId);
  return [...doomed];
}
