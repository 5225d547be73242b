/**
 * Waiting in tests: poll a condition or race a promise, always against a deadline.
 * A fixed sleep is never synchronisation; these are.
 */
import { setTimeout as delay } from "node:timers/promises";

export interface WaitForOptions {
  /** Give up after this many ms. Default 10 000. */
  timeoutMs?: number;
  /** Pause between probes. Default 25. */
  intervalMs?: number;
  /** What is awaited, for the error message. Default "condition". */
  what?: string;
}

/**
 * Calls `probe` until it returns a truthy value and resolves with that value. A probe that throws
 * counts as "not yet"; on timeout the last thrown error becomes the `cause`.
 * Throws `Error("timed out after <N>ms waiting for <what>")`.
 */
export async function waitFor<T>(probe: () => T | Promise<T>, options: WaitForOptions = {}): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 25, what = "condition" } = options;
  const end = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    const left = end - Date.now();
    if (left <= 0) {
      throw new Error(
        `timed out after ${timeoutMs}ms waiting for ${what}`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await delay(Math.min(intervalMs, left));
  }
}

/**
 * Resolves or rejects as `promise` does, unless `timeoutMs` passes first: then rejects with
 * `Error("timed out after <N>ms waiting for <what>")`. The timer never outlives the race.
 */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what = "promise"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface Deadline {
  /** Aborts when the deadline passes (an `AbortSignal.timeout`). */
  readonly signal: AbortSignal;
  /** Ms left, never negative. */
  remaining(): number;
  expired(): boolean;
}

/** A deadline `ms` from now, shared by several waits of one test. */
export function deadline(ms: number): Deadline {
  const end = Date.now() + ms;
  const signal = AbortSignal.timeout(ms);
  return {
    signal,
    remaining: () => Math.max(0, end - Date.now()),
    expired: () => Date.now() >= end,
  };
}
