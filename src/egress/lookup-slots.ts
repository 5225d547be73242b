/**
 * How many DNS lookups each workspace may have going at once, and the whole sidecar. A workspace
 * holds at most `perKey` lookups in flight and `queuePerKey` waiting; past that a lookup is refused
 * at once (the caller answers "too many lookups in flight"), so one workspace asking for names that
 * never answer occupies a few slots and a short line, never the resolver. Past `total` in flight
 * across workspaces, lookups wait, and a freed slot goes to the workspaces in turn (round robin
 * over those waiting, first come first served within one): a flood from one workspace cannot push
 * another's lookup to the back.
 */

export type SlotRelease = () => void;

export interface LookupSlotsOptions {
  /** Lookups in flight per key. */
  perKey: number;
  /** Lookups waiting per key; past it, refused. */
  queuePerKey: number;
  /** Lookups in flight in all. */
  total: number;
}

export type SlotAnswer = { ok: true; release: SlotRelease } | { ok: false; reason: "busy" | "aborted" };

interface Waiter {
  wake(release: SlotRelease): void;
}

export class LookupSlots {
  readonly #inFlight = new Map<string, number>();
  /** Keys with waiting lookups, in the order they get the next freed slot. */
  readonly #waiting = new Map<string, Waiter[]>();
  #total = 0;

  constructor(readonly options: LookupSlotsOptions) {
    for (const [name, min] of [
      ["perKey", 1],
      ["queuePerKey", 0],
      ["total", 1],
    ] as const) {
      const value = options[name];
      if (!Number.isInteger(value) || value < min)
        throw new TypeError(
          `invalid lookup slots option ${name}: got ${value}, expected a whole number of at least ${min}`,
        );
    }
  }

  /** A slot for `key`: at once, once one is free, or a refusal ("busy": its line is full; "aborted": `signal` ended the wait). */
  acquire(key: string, signal: AbortSignal): Promise<SlotAnswer> {
    if (signal.aborted) return Promise.resolve({ ok: false, reason: "aborted" });
    const line = this.#waiting.get(key);
    if (line === undefined && this.#startable(key)) return Promise.resolve({ ok: true, release: this.#take(key) });
    if ((line?.length ?? 0) >= this.options.queuePerKey) return Promise.resolve({ ok: false, reason: "busy" });
    return new Promise((resolve) => {
      const waiter: Waiter = {
        wake: (release) => {
          signal.removeEventListener("abort", onAbort);
          resolve({ ok: true, release });
        },
      };
      const onAbort = (): void => {
        this.#removeWaiter(key, waiter);
        resolve({ ok: false, reason: "aborted" });
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const waiters = this.#waiting.get(key) ?? [];
      waiters.push(waiter);
      this.#waiting.set(key, waiters);
    });
  }

  /** Lookups in flight for `key`, or in all (for tests and metrics). */
  inFlight(key?: string): number {
    return key === undefined ? this.#total : (this.#inFlight.get(key) ?? 0);
  }

  /** Lookups waiting for `key`. */
  waiting(key: string): number {
    return this.#waiting.get(key)?.length ?? 0;
  }

  #startable(key: string): boolean {
    return (this.#inFlight.get(key) ?? 0) < this.options.perKey && this.#total < this.options.total;
  }

  #take(key: string): SlotRelease {
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
    this.#total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#inFlight.get(key) ?? 1) - 1;
      if (left === 0) this.#inFlight.delete(key);
      else this.#inFlight.set(key, left);
      this.#total--;
      this.#wakeNext();
    };
  }

  /** Gives freed slots to waiting lookups, one key at a time in turn. */
  #wakeNext(): void {
    for (const [key, waiters] of this.#waiting) {
      if (this.#total >= this.options.total) return;
      if (!this.#startable(key)) continue;
      const waiter = waiters.shift()!;
      // The key goes to the back of the turn order (or leaves it, its line empty).
      this.#waiting.delete(key);
      if (waiters.length > 0) this.#waiting.set(key, waiters);
      waiter.wake(this.#take(key));
      return;
    }
  }

  #removeWaiter(key: string, waiter: Waiter): void {
    const waiters = this.#waiting.get(key);
    if (waiters === undefined) return;
    const at = waiters.indexOf(waiter);
    if (at !== -1) waiters.splice(at, 1);
    if (waiters.length === 0) this.#waiting.delete(key);
  }
}
