/**
 * The lines of a turn's journal file (`<stateDir>/journal/<turnId>.jsonl`), one JSON object each:
 *
 *   {"k":"start","turnId","workspaceId","startedAt"}           first, when the turn is accepted
 *   {"jsonrpc":"2.0","method":"turn.event","params":{"turnId","seq","event"}}
 *                                                              every event, in seq order, the very
 *                                                              line the connection sent
 *   {"k":"end","turnId","workspaceId","startedAt","endedAt","status","lastSeq","result"}   last
 *
 * A turn's file stays within the per-turn bound, end line included. A turn whose events outgrow
 * their share of it gets, in place of the event that would cross it, the marker event
 * `{ type: "sidecar.journal.truncated", max_bytes }` under that event's seq; later events are not
 * kept. The end line always is: its result's items and final response are cut to what is left
 * (encodeEndRecord), and the result says so (`itemsOmitted`, `finalResponseTruncated`). A file
 * without an end line is a turn that is running, or one an earlier sidecar left when it died
 * (recovered at start-up).
 */
import type { TurnResult, TurnStatus, TurnSummary } from "../service.js";
import { truncateUtf8 } from "../shared/utf8.js";

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

/**
 * The end line (newline included) within `maxBytes`. When the whole result does not fit, its final
 * response is kept first (cut to fit if need be: the answer matters most), then its items in order
 * while they fit; the result counts the items left out in `itemsOmitted` and marks a cut response
 * with `finalResponseTruncated`. Only a line whose other fields alone pass the bound (never with the
 * writer's reserve: they are a few hundred bytes and an error of at most 16 KiB) goes over it.
 */
export function encodeEndRecord(record: EndRecord, maxBytes: number): string {
  const whole = `${JSON.stringify(record)}\n`;
  if (Buffer.byteLength(whole) <= maxBytes) return whole;
  const { result } = record;
  const omittedBefore = result.itemsOmitted ?? 0;
  // The fixed part, counting every item as left out (a count no longer than it will be).
  const bare: TurnResult = {
    ...result,
    finalResponse: "",
    items: [],
    itemsOmitted: omittedBefore + result.items.length,
  };
  let room = maxBytes - Buffer.byteLength(`${JSON.stringify({ ...record, result: bare })}\n`);
  let finalResponse = result.finalResponse;
  if (jsonBytes(finalResponse) - 2 > room) {
    const flag = result.finalResponseTruncated ? 0 : Buffer.byteLength(',"finalResponseTruncated":true');
    room -= flag;
    finalResponse = fitJsonString(finalResponse, Math.max(0, room));
  }
  room -= jsonBytes(finalResponse) - 2;
  const items: TurnResult["items"] = [];
  for (const item of result.items) {
    const cost = jsonBytes(item) + (items.length > 0 ? 1 : 0);
    if (cost > room) break;
    items.push(item);
    room -= cost;
  }
  const kept: TurnResult = { ...result, finalResponse, items };
  const omitted = omittedBefore + result.items.length - items.length;
  if (omitted > 0) kept.itemsOmitted = omitted;
  if (result.finalResponseTruncated || finalResponse.length !== result.finalResponse.length)
    kept.finalResponseTruncated = true;
  return `${JSON.stringify({ ...record, result: kept })}\n`;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/** The longest start of `text` whose JSON string, quotes aside, is at most `maxBytes`. */
function fitJsonString(text: string, maxBytes: number): string {
  let budget = maxBytes;
  for (;;) {
    const cut = truncateUtf8(text, budget);
    const excess = jsonBytes(cut) - 2 - maxBytes;
    // Every byte of text is at least one byte of JSON: cutting `excess` more bytes is enough, bar a character boundary.
    if (excess <= 0 || budget <= 0) return excess <= 0 ? cut : "";
    budget -= excess;
  }
}

/** One line back into a record; null for a line that is not one (a torn last line of a killed sidecar). */
export function parseRecord(line: string): JournalRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const record = value as {
    k?: unknown;
    turnId?: unknown;
    method?: unknown;
    params?: { seq?: unknown; event?: unknown };
  };
  if (record.method === "turn.event" && typeof record.params?.seq === "number")
    return { k: "event", seq: record.params.seq, event: record.params.event };
  if ((record.k === "start" || record.k === "end") && typeof record.turnId === "string") return value as JournalRecord;
  return null;
}

export function summaryOfEnd(end: EndRecord): TurnSummary {
  return {
    turnId: end.turnId,
    workspaceId: end.workspaceId,
    status: end.status,
    lastSeq: end.lastSeq,
    startedAt: end.startedAt,
    endedAt: end.endedAt,
    detached: false,
  };
}

/**
 * Which ended turns pruning removes: those that ended before `now - maxAgeMs`, then the oldest
 * past `maxTurns`. Pure, for the unit tests.
 */
export function turnsToPrune(ended: readonly TurnSummary[], now: number, maxAgeMs: number, maxTurns: number): string[] {
  const byEnd = [...ended].sort((a, b) => Date.parse(a.endedAt ?? a.startedAt) - Date.parse(b.endedAt ?? b.startedAt));
  const doomed = new Set<string>();
  for (const turn of byEnd)
    if (maxAgeMs > 0 && now - Date.parse(turn.endedAt ?? turn.startedAt) > maxAgeMs) doomed.add(turn.turnId);
  const kept = byEnd.filter((turn) => !doomed.has(turn.turnId));
  for (const turn of kept.slice(0, Math.max(0, kept.length - maxTurns))) doomed.add(turn.turnId);
  return [...doomed];
}
