/**
 * What a turn's events add up to: the reducer that folds each codex event into the turn's result.
 *
 * Codex's events are the tenant's to script (codex/codex-output.ts), so what is kept of them is bounded:
 * the result holds the turn's first items up to RESULT_ITEMS_MAX and RESULT_ITEMS_MAX_BYTES (the
 * rest are counted in `itemsOmitted`; every item still went out as its event), and `finalResponse`
 * up to FINAL_RESPONSE_MAX_BYTES. An event whose shape is not codex's fails the turn with
 * `codex_output` instead of throwing somewhere later.
 */
import type { ThreadEvent, ThreadItem, Usage } from "@openai/codex-sdk";
import { truncateUtf8 } from "../shared/utf8.js";
import { CODEX_OUTPUT } from "../codex/codex-output.js";
import { isThreadId } from "../codex/threads.js";

/**
 * Items a result keeps. A long legitimate turn has hundreds; the count bounds what many tiny items
 * cost in memory, which their bytes alone do not (an object weighs far more than its JSON).
 */
export const RESULT_ITEMS_MAX = 10_000;
/**
 * Bytes of JSON of the items a result keeps: the result is held until the turn ends, sent as one
 * message and written to the journal. Each item also went out as its own event.
 */
export const RESULT_ITEMS_MAX_BYTES = 16 * 1024 * 1024;
/** The longest `finalResponse`: a model's message is bounded by its output tokens (well under 1 MiB). */
export const FINAL_RESPONSE_MAX_BYTES = 4 * 1024 * 1024;
/** Keys of a usage report looked at: codex reports five counts. */
const USAGE_KEYS_LOOKED_AT = 32;

export interface TurnFailure {
  code: string;
  message: string;
}

export interface TurnState {
  threadId: string | null;
  items: ThreadItem[];
  /** Bytes of JSON of the kept items (as their events were encoded). */
  itemsBytes: number;
  /** Completed items the result does not keep. */
  itemsOmitted: number;
  finalResponse: string;
  finalResponseTruncated: boolean;
  usage: Usage | null;
  failure: TurnFailure | null;
}

export function newTurnState(threadId: string | null): TurnState {
  return {
    threadId,
    items: [],
    itemsBytes: 0,
    itemsOmitted: 0,
    finalResponse: "",
    finalResponseTruncated: false,
    usage: null,
    failure: null,
  };
}

/**
 * Folds one event into the state. `eventBytes` is the size of the event's JSON (an item's size is
 * at most that); the event has been checked to be an object with a string `type` (codex/codex-output.ts).
 */
export function applyTurnEvent(
  event: ThreadEvent,
  state: TurnState,
  requestedThread: string | undefined,
  eventBytes: number,
): void {
  switch (event.type) {
    case "thread.started": {
      const threadId: unknown = event.thread_id;
      // A thread id names a file and goes into logs and results: codex's are UUIDs, nothing else is taken.
      if (typeof threadId !== "string" || !isThreadId(threadId)) {
        state.failure = { code: CODEX_OUTPUT, message: "codex reported a thread id that is not a UUID" };
        break;
      }
      if (requestedThread !== undefined && threadId !== requestedThread) {
        state.failure = {
          code: "thread_mismatch",
          message: `codex started thread ${threadId} instead of resuming ${requestedThread}`,
        };
      }
      state.threadId = threadId;
      break;
    }
    case "item.completed": {
      const item: unknown = event.item;
      if (!isRecord(item) || typeof item.type !== "string") {
        state.failure = {
          code: CODEX_OUTPUT,
          message: "codex reported a completed item that is not an object with a type",
        };
        break;
      }
      keepItem(state, event.item, eventBytes);
      if (item.type === "agent_message" && typeof item.text === "string") {
        state.finalResponse = truncateUtf8(item.text, FINAL_RESPONSE_MAX_BYTES);
        state.finalResponseTruncated = state.finalResponse.length !== item.text.length;
      }
      break;
    }
    case "turn.completed":
      state.usage = keptUsage(event.usage);
      break;
    case "turn.failed": {
      const error: unknown = event.error;
      const message =
        isRecord(error) && typeof error.message === "string"
          ? error.message
          : "codex reported a failed turn without a message";
      // Bounded where the result is made (turn-execution.ts), like every failure's message.
      state.failure = { code: "model_error", message };
      break;
    }
    default:
      break;
  }
}

/** Keeps the item while the result has room for it; past a bound it is only counted. */
function keepItem(state: TurnState, item: ThreadItem, bytes: number): void {
  if (
    state.itemsOmitted > 0 ||
    state.items.length >= RESULT_ITEMS_MAX ||
    state.itemsBytes + bytes > RESULT_ITEMS_MAX_BYTES
  ) {
    state.itemsOmitted += 1;
    return;
  }
  state.items.push(item);
  state.itemsBytes += bytes;
}

/**
 * The usage report's numeric fields (codex's five counts, and any it adds), nothing else; null when
 * it is not an object. Only its first USAGE_KEYS_LOOKED_AT keys are looked at: a report of a million
 * keys costs no more than one of five.
 */
function keptUsage(usage: unknown): Usage | null {
  if (!isRecord(usage)) return null;
  const kept: Record<string, number> = {};
  let looked = 0;
  for (const key in usage) {
    if (looked >= USAGE_KEYS_LOOKED_AT) break;
    looked += 1;
    const value = usage[key];
    if (typeof value === "number" && Number.isFinite(value) && key.length <= 64) kept[key] = value;
  }
  return kept as Usage;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
