/**
 * The engine's event stream for our containers: it keeps each record's state current, so a warm
 * ensure costs no engine round trip. A lost stream is followed again (and the records reconciled).
 */
import type { Docker } from "../docker/engine.js";
import { withDocker } from "../docker/engine.js";
import { ExecStreams } from "../docker/exec-streams.js";
import { Labels } from "../docker/labels.js";
import type { Logger } from "../log.js";
import { LineSplitter } from "../shared/line-splitter.js";
import type { WorkspaceRegistry } from "./registry.js";

export interface WorkspaceEventsOptions {
  docker: Docker;
  log: Logger;
  registry: WorkspaceRegistry;
  filter: { label: string[] };
  /** Drops a workspace whose container was destroyed. */
  forget(workspaceId: string): void;
  /** Catches up with what happened while the stream was lost. */
  reconcile(): Promise<void>;
}

interface ContainerEvent {
  Action?: string;
  id?: string;
  timeNano?: number;
  Actor?: { Attributes?: Record<string, string> };
}

export class WorkspaceEvents {
  #stream: NodeJS.ReadableStream | null = null;
  #closed = false;

  constructor(private readonly options: WorkspaceEventsOptions) {}

  /** False while the stream is lost: the records may be stale. */
  get following(): boolean {
    return this.#stream !== null;
  }

  close(): void {
    this.#closed = true;
    (this.#stream as (NodeJS.ReadableStream & { destroy?: () => void }) | null)?.destroy?.();
  }

  async follow(): Promise<void> {
    const stream = (await withDocker("follow engine events", () =>
      this.options.docker.getEvents({ filters: { type: ["container"], ...this.options.filter } }),
    )) as NodeJS.ReadableStream;
    this.#stream = stream;
    const lines = new LineSplitter();
    stream.on("data", (chunk: Buffer) => {
      for (const line of lines.push(chunk)) if (line.kind === "line" && line.text.trim() !== "") this.#apply(line.text);
    });
    const lost = (): void => {
      if (this.#stream !== stream) return;
      this.#stream = null;
      if (this.#closed) return;
      this.options.log.warn("lost the engine event stream; warm ensures will check the engine until it is back");
      const retry = setTimeout(() => void this.follow().then(() => this.options.reconcile()).catch(() => lost()), 2000);
      retry.unref();
    };
    stream.on("end", lost);
    stream.on("error", lost);
  }

  #apply(line: string): void {
    let event: ContainerEvent;
    try {
      event = JSON.parse(line) as ContainerEvent;
    } catch {
      return;
    }
    const workspaceId = event.Actor?.Attributes?.[Labels.workspaceId];
    const record = workspaceId === undefined ? undefined : this.options.registry.find(workspaceId);
    if (!record || record.containerId !== event.id) return;
    switch (event.Action) {
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
        ExecStreams.of(this.options.docker).destroyContainer(record.containerId, event.timeNano === undefined ? Infinity : event.timeNano / 1e6);
        break;
      case "destroy":
        this.options.forget(record.params.workspaceId);
        break;
      default:
        break;
    }
  }
}
