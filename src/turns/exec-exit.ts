/**
 * Waiting for codex to exit. Codex's stdio is on the turn's files (codex/turn-files.ts), so the
 * launcher's exec connection ends as codex starts and cannot say when codex ends: the engine is
 * asked (exec inspect), soon after each output (codex may be about to exit: its last event is
 * out) and less often while codex is quiet. A few asks a second at most per turn, mostly one every
 * two seconds.
 */
import type { EnginePort } from "../docker/engine-port.js";

const POLL_FIRST_MS = 50;
const POLL_MAX_MS = 2000;

export class ExecExitWatch {
  #poke: (() => void) | null = null;
  #stopped = false;

  constructor(
    private readonly engine: Pick<EnginePort, "inspectExec">,
    private readonly execId: string,
  ) {}

  /** Output arrived, or the launcher's connection ended: ask again soon. */
  poke(): void {
    const poke = this.#poke;
    this.#poke = null;
    poke?.();
  }

  /** Ends the wait (with null): the turn is left running. */
  stop(): void {
    this.#stopped = true;
    this.poke();
  }

  /**
   * Codex's exit code; null when the engine no longer knows the exec (its container is gone) or the
   * watch was stopped. An engine that does not answer is asked again.
   */
  async exited(): Promise<number | null> {
    let delay = POLL_FIRST_MS;
    for (;;) {
      if (this.#stopped) return null;
      const state = await this.engine.inspectExec(this.execId).catch(() => undefined);
      if (state === null) return null;
      if (state !== undefined && !state.running) return state.exitCode;
      if (this.#stopped) return null;
      const poked = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.#poke = null;
          resolve(false);
        }, delay);
        this.#poke = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      delay = poked ? POLL_FIRST_MS : Math.min(delay * 2, POLL_MAX_MS);
    }
  }
}
