/**
 * How much of the model API one tenant may hold: a cap on concurrent upstream requests per turn
 * (codex needs one or two; a token budget then overshoots by at most that many responses) with a
 * short wait line behind it, and a request rate per workspace (a token bucket), so one tenant
 * cannot use up the organisation's rate limit.
 */

/** A slot is held from before the body is read until the upstream's response has ended. */
export type SlotRelease = () => void;

export class ConcurrencySlots {
  readonly #inFlight = new Map<string, number>();
  readonly #waiting = new Map<string, Array<(release: SlotRelease | null) => void>>();

  constructor(
    private readonly perKey: number,
    private readonly queuePerKey: number,
  ) {}

  /**
   * A slot for `key`, at once or once one is free (first come, first served); null when the wait
   * line is full or `signal` aborts first.
   */
  acquire(key: string, signal: AbortSignal): Promise<SlotRelease | null> {
    if ((this.#inFlight.get(key) ?? 0) < this.perKey) return Promise.resolve(this.#take(key));
    const line = this.#waiting.get(key) ?? [];
    if (line.length >= this.queuePerKey || signal.aborted) return Promise.resolve(null);
    this.#waiting.set(key, line);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        const at = line.indexOf(wake);
        if (at !== -1) line.splice(at, 1);
        if (line.length === 0 && this.#waiting.get(key) === line) this.#waiting.delete(key);
        resolve(null);
      };
      const wake = (release: SlotRelease | null): void => {
        signal.removeEventListener("abort", onAbort);
        resolve(release);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      line.push(wake);
    });
  }

  /** Requests in flight for `key` (for tests). */
  inFlight(key: string): number {
    return this.#inFlight.get(key) ?? 0;
  }

  #take(key: string): SlotRelease {
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const line = this.#waiting.get(key);
      const next = line?.shift();
      if (line?.length === 0) this.#waiting.delete(key);
      if (next) {
        // The slot passes straight to the next in line: the count does not change.
        this.#inFlight.set(key, (this.#inFlight.get(key) ?? 1) - 1);
        next(this.#take(key));
        return;
      }
      const left = (this.#inFlight.get(key) ?? 1) - 1;
      if (left <= 0) this.#inFlight.delete(key);
      else this.#inFlight.set(key, left);
    };
  }
}

/** A token bucket per key: `perMinute` requests a minute, up to `perMinute` at once after a quiet minute. */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one request for `key`: 0 if allowed, else the ms until one would be. 0 perMinute: no limit. */
  take(key: string): number {
    if (this.perMinute === 0) return 0;
    const now = this.now();
    const perMs = this.perMinute / 60_000;
    const bucket = this.#buckets.get(key) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / perMs);
  }
}
