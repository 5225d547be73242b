/**
 * How every runsc test tolerates gVisor's random stall (docs/runtimes.md), and only it:
 * the sidecar ends a stalled turn `failed` with error code `sandbox_stalled` (src/codex/stall-watch.ts);
 * a test that meets one throws SandboxStalled (assertNotStalled), and retryOnSandboxStall runs the
 * whole attempt once more (a turn of several commands: up to once per command, at most 3), in the
 * fresh workspaces the attempt makes for itself, printing RETRY and
 * counting it in the file scripts/test.mjs tallies at the end of the run. Any other result, a
 * timed_out one included, fails the test as before; a stall past the retries fails it too.
 */
import { appendFileSync } from "node:fs";
import type { TurnResult } from "../../src/service.js";

export const STALL_CODE = "sandbox_stalled";
/** Set by scripts/test.mjs: one line per retry, read back for the run's tally. */
export const RETRY_LOG_ENV = "ALIVE_CODEX_TEST_RETRY_LOG";

export class SandboxStalled extends Error {}

/** Throws SandboxStalled when the turn ended with the sidecar's stall verdict. */
export function assertNotStalled(result: Pick<TurnResult, "status" | "error">, what = "the turn"): void {
  if (result.status === "failed" && result.error?.code === STALL_CODE)
    throw new SandboxStalled(`${what} stalled in its sandbox: ${result.error.message}`);
}

/**
 * Runs `attempt`; a SandboxStalled from it is printed, counted and answered by one more attempt.
 * `commands`: how many commands the attempt's turn runs (default 1). The stall strikes per command
 * codex runs (a child it never reaps), so an attempt of several commands is that many times as
 * likely to meet one: it gets one more retry per further command, up to 3 retries in all.
 */
export async function retryOnSandboxStall<T>(
  label: string,
  attempt: (n: number) => Promise<T>,
  options: { commands?: number } = {},
): Promise<T> {
  const retries = Math.min(3, Math.max(1, options.commands ?? 1));
  for (let n = 1; ; n += 1) {
    try {
      return await attempt(n);
    } catch (error) {
      if (!(error instanceof SandboxStalled) || n > retries) throw error;
      const line = `RETRY ${label}: ${error.message}; once more in fresh workspaces (retry ${n} of at most ${retries})`;
      console.log(line);
      const file = process.env[RETRY_LOG_ENV];
      if (file) appendFileSync(file, `${line.replace(/\n/g, " ")}\n`);
    }
  }
}
