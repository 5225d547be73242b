/**
 * The engine's event stream for our containers: it keeps each record's state current, so a warm
 * ensure costs no engine round trip. A lost stream is followed again (and the records reconciled).
 */
import type { ContainerEvent, EnginePort } from "../docker/engine-port.js";
import { Labels } from "../docker/labels.js";
import type { Logger } from "../log.js";
import type { WorkspaceRegistry } from "./registry.js";

export interface WorkspaceEventsOptions {
  engine: Pick<EnginePort, "events" | "closeExecs">;
  log: Logger;
  registry: WorkspaceRegistry;
  /** Only containers carrying all these labels. */
  labels: Record<string, string>;
  /** Drops a workspace whose container was destroyed. */
  forget(workspaceId: string): void;
  /** Catches up with what happened while the stream was lost. */
  reconcile(): Promise<void>;
}

export class WorkspaceEvents {
  /** Ends the stream being followed; null while none is. */
  #following: AbortController | null = null;
  #closed = false;

  constructor(private readonly options: WorkspaceEventsOptions) {}

  /** False while the stream is lost: the records may be stale. */
  get following(): boolean {
    return this.#following !== null;
  }

  close(): void {
    this.#closed = true;
    this.#following?.abort();
  }

  async follow(): Promise<void> {
    const following = new AbortController();
    const events = await this.options.engine.events(this.options.labels, following.signal);
    // Closed while the engine was answering: the stream it opened is not followed.
    if (this.#closed) following.abort();
    this.#following = following;
    const lost = (): void => {
      if (this.#following !== following) return;
      this.#following = null;
      if (this.#closed) return;
      this.options.log.warn("lost the engine event stream; warm ensures will check the engine until it is back");
      const retry = setTimeout(
        () =>
          void this.follow()
            .then(() => this.options.reconcile())
            .catch(() => lost()),
        2000,
      );
      retry.unref();
    };
    void (async () => {
      try {
        for await (const event of events) this.#apply(event);
      } catch {
        // Lost either way: the end of the iteration says so.
      }
      following.abort();
      lost();
    })();
  }

  #apply(event: ContainerEvent): void {
    const workspaceId = event.attributes[Labels.workspaceId];
    const record = workspaceId === undefined ? undefined : this.options.registry.find(workspaceId);
    if (!record || record.containerId !== event.containerId) return;
    switch (event.action) {
      case "start":
      case "unpause":
        record.state = "running";
        record.pausedAt = null;
        break;
      case "pause":
        // Paused by the reaper (which set this already) or by an operator: the stop period starts now.
        if (record.state !== "paused") record.pausedAt = Date.now();
        record.state = "paused";
        break;
      case "die":
        record.state = "exited";
        record.pausedAt = null;
        // Its processes are gone; their exec connections may stay open until we close them.
        this.options.engine.closeExecs(record.containerId, event.at ?? Infinity);
        break;
      case "destroy":
        this.options.forget(record.params.workspaceId);
        break;
      default:
        break;
    }
  }
}
