/** A turn the hub (turn-hub.ts) follows while it runs: its summary, its journal writer, whoever is attached. */
import type { TurnResult } from "../service.js";
import type { TurnSummary } from "../journal/journal-records.js";
import type { JournalWriter } from "../journal/journal-writer.js";

export /** An event for a subscriber: the object when live, null when replayed from the journal; its turn.event line always. */
type EventSink = (seq: number, event: unknown, line: string) => void;

export interface LiveTurn {
  summary: TurnSummary;
  writer: JournalWriter | null;
  /** The writer is being opened: events wait for it. */
  opening: Promise<void>;
  subscribers: Set<EventSink>;
  /** The turn.run client went away and the turn runs on (onDisconnect "continue"). */
  clientGone: boolean;
  result: TurnResult | null;
  ended: Promise<TurnResult>;
  resolveEnded(result: TurnResult): void;
}
