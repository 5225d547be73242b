/** One run of a task, shared by every caller that arrives while it runs. */
import { raceAbort } from "./abort.js";

interface Flight<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
  settled: boolean;
}

/**
 * Concurrent run() calls share one run of `task`; a later call, after it settled, starts a new one.
 * A caller's `signal` ends only its own wait; the run is aborted when no caller waits any more.
 */
export class SharedFlight<T> {
  readonly #task: (signal: AbortSignal) => Promise<T>;
  #inflight: Flight<T> | null = null;

  constructor(task: (signal: AbortSignal) => Promise<T>) {
    this.#task = task;
  }

  async run(signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    let flight = this.#inflight;
    if (flight === null) {
      const controller = new AbortController();
      const created: Flight<T> = {
        promise: this.#task(controller.signal).finally(() => {
          created.settled = true;
          if (this.#inflight === created) this.#inflight = null;
        }),
        controller,
        waiters: 0,
        settled: false,
      };
      // Waiters handle the outcome; this keeps a run whose waiters all left from being an unhandled rejection.
      created.promise.catch(() => {});
      this.#inflight = flight = created;
    }
    flight.waiters += 1;
    try {
      return signal === undefined ? await flight.promise : await raceAbort(flight.promise, signal);
    } finally {
      flight.waiters -= 1;
      if (flight.waiters === 0 && !flight.settled) {
        flight.controller.abort(signal?.reason);
        if (this.#inflight === flight) this.#inflight = null;
      }
    }
  }
}
