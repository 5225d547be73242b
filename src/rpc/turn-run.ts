/** A turn in flight on a SidecarClient: its events as an async iterable, its result as a promise. */
import type { TurnResult } from "../service.js";
import type { TurnEvent } from "./protocol.js";

export interface TurnEventMessage {
  seq: number;
  event: TurnEvent;
}

/**
 * A turn in flight. Iterate it for its events (in order, as they arrive; events that arrive before
 * iteration starts are kept for it); `result` settles when the turn ends. Iterate once.
 */
export class TurnRun implements AsyncIterable<TurnEventMessage> {
  /** Resolves with the turn's id once the first event arrives (cancel from then on). */
  readonly turnId: Promise<string>;
  readonly result: Promise<TurnResult>;
  readonly #queue: TurnEventMessage[] = [];
  #wake: (() => void) | null = null;
  #finished = false;
  #failure: Error | null = null;
  #iterated = false;
  #resolveTurnId!: (turnId: string) => void;
  #rejectTurnId!: (error: Error) => void;
  #sawEvent = false;
  #lastSeq = -1;

  /** @internal Built by SidecarClient.runTurn. */
  constructor(result: Promise<TurnResult>) {
    this.turnId = new Promise((resolve, reject) => {
      this.#resolveTurnId = resolve;
      this.#rejectTurnId = reject;
    });
    this.turnId.catch(() => {});
    this.result = result.then(
      (value) => {
        this.#resolveTurnId(value.turnId);
        this.#finish(null);
        return value;
      },
      (error: Error) => {
        this.#rejectTurnId(error);
        this.#finish(error);
        throw error;
      },
    );
    // Whoever iterates sees a failure through the iterator; nobody has to await `result` as well.
    this.result.catch(() => {});
  }

  /** The seq of the last event handed to the iteration (-1: none yet). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** @internal An event at or below the last seq taken (a replay after a reattach) is dropped: each seq is seen once. */
  pushEvent(turnId: string, message: TurnEventMessage): void {
    if (this.#finished || message.seq <= this.#lastSeq) return;
    this.#lastSeq = message.seq;
    if (!this.#sawEvent) {
      this.#sawEvent = true;
      this.#resolveTurnId(turnId);
    }
    this.#queue.push(message);
    this.#notify();
  }

  #finish(failure: Error | null): void {
    this.#finished = true;
    this.#failure = failure;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TurnEventMessage> {
    if (this.#iterated) throw new Error("a TurnRun can be iterated once");
    this.#iterated = true;
    for (;;) {
      const next = this.#queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#finished) {
        if (this.#failure !== null) throw this.#failure;
        return;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}
