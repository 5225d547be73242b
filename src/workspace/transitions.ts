/**
 * Per workspace, the one transition in flight (an ensure, a pause or a stop): they never overlap.
 * An ensure that arrives during one waits for it and then looks again; the idle reaper skips a
 * workspace that has one.
 */
export class WorkspaceTransitions {
  readonly #pending = new Map<string, Promise<unknown>>();

  /** Whether the workspace has a transition in flight. */
  busy(workspaceId: string): boolean {
    return this.#pending.has(workspaceId);
  }

  /** Resolves when the transition in flight (if any) has settled, whatever its outcome: that is its caller's to handle. */
  async settled(workspaceId: string): Promise<void> {
    await this.#pending.get(workspaceId)?.catch(() => undefined);
  }

  /** Runs `work` as the workspace's one transition; it is registered before `work` first yields. */
  run<T>(workspaceId: string, work: () => Promise<T>): Promise<T> {
    const attempt = work().finally(() => {
      if (this.#pending.get(workspaceId) === attempt) this.#pending.delete(workspaceId);
    });
    this.#pending.set(workspaceId, attempt);
    return attempt;
  }
}
