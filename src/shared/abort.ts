/** Abort and deadline helpers: an AbortSignal is the one cancellation token. */

/**
 * Waits for `promise`, or rejects with the signal's reason when it aborts first (a deadline is
 * `AbortSignal.timeout`); the listener is always removed. The promise itself runs on.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    void promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
