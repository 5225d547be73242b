/** What a turn's events add up to: the reducer that folds each codex event into the turn's result. */
import type { ThreadEvent, ThreadItem, Usage } from "@openai/codex-sdk";

export interface TurnFailure {
  code: string;
  message: string;
}

export interface TurnState {
  threadId: string | null;
  items: ThreadItem[];
  finalResponse: string;
  usage: Usage | null;
  failure: TurnFailure | null;
}

export function newTurnState(threadId: string | null): TurnState {
  return { threadId, items: [], finalResponse: "", usage: null, failure: null };
}

export function applyTurnEvent(event: ThreadEvent, state: TurnState, requestedThread: string | undefined): void {
  switch (event.type) {
    case "thread.started":
      if (requestedThread !== undefined && event.thread_id !== requestedThread) {
        state.failure = { code: "thread_mismatch", message: `codex started thread ${event.thread_id} instead of resuming ${requestedThread}` };
      }
      state.threadId = event.thread_id;
      break;
    case "item.completed":
      state.items.push(event.item);
      if (event.item.type === "agent_message") state.finalResponse = event.item.text;
      break;
    case "turn.completed":
      state.usage = event.usage;
      break;
    case "turn.failed":
      state.failure = { code: "model_error", message: event.error.message };
      break;
    default:
      break;
  }
}
