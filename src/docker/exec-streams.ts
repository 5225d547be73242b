/**
 * Every exec connection the sidecar holds open, by container.
 *
 * The engine keeps a hijacked exec connection (`POST /exec/<id>/start`) open after the process
 * and even the container are gone (seen with Engine 20.10: a launcher's connection outlived the
 * removal of its container), so nothing but the client ends it. One such socket keeps the
 * sidecar's process from exiting and leaks a file descriptor per removed workspace. Whoever
 * removes, replaces or sees the death of a container closes its connections here; `destroyAll`
 * closes the rest on shutdown.
 *
 * Kept per Docker client (a WeakMap keyed by it), so every `startExec` on that client is tracked
 * without threading a registry through each caller, and two sidecars in one process never share one.
 */
import type { Duplex } from "node:stream";
import type Docker from "dockerode";
import { TrackingAgent } from "./tracking-agent.js";

const registries = new WeakMap<Docker, ExecStreams>();

export class ExecStreams {
  /** Per container: each open connection and when it was opened (ms since the epoch). */
  private readonly byContainer = new Map<string, Map<Duplex, number>>();
  /** Set by destroyAll (shutdown): an exec that starts after it is closed at once, not left open. */
  private closed = false;

  /** The client's agent, when it tracks its sockets (engine.ts): exec starts still in flight are closed too. */
  private agent: TrackingAgent | null = null;
  /** Exec ids started, by container: which in-flight start socket is whose. */
  private readonly execsOf = new Map<string, Set<string>>();

  /** The registry of this Docker client's exec connections. */
  static of(docker: Docker): ExecStreams {
    let registry = registries.get(docker);
    if (!registry) {
      registry = new ExecStreams();
      const agent = (docker as unknown as { modem?: { agent?: unknown } }).modem?.agent;
      if (agent instanceof TrackingAgent) registry.agent = agent;
      registries.set(docker, registry);
    }
    return registry;
  }

  /**
   * An exec of this container is being started: its socket, not ours yet, closes with the
   * container's. Call the returned function once the start settled (the socket is ours or gone).
   */
  expect(containerId: string, execId: string): () => void {
    let ids = this.execsOf.get(containerId);
    if (!ids) this.execsOf.set(containerId, (ids = new Set()));
    ids.add(execId);
    return () => {
      const current = this.execsOf.get(containerId);
      current?.delete(execId);
      if (current?.size === 0) this.execsOf.delete(containerId);
    };
  }

  /** Closes the sockets of exec starts of this container (all, with null) the client still holds. */
  private destroyStarting(containerId: string | null): number {
    if (this.agent === null) return 0;
    const ids = containerId === null ? null : this.execsOf.get(containerId);
    let closed = 0;
    for (const { execId, socket } of this.agent.execStarts()) {
      if (ids === undefined || (ids !== null && !ids.has(execId))) continue;
      socket.destroy();
      closed += 1;
    }
    if (containerId !== null) this.execsOf.delete(containerId);
    else this.execsOf.clear();
    return closed;
  }

  /** Tracks the connection until it closes. */
  add(containerId: string, stream: Duplex): void {
    if (this.closed) {
      stream.destroy();
      return;
    }
    let streams = this.byContainer.get(containerId);
    if (!streams) {
      streams = new Map();
      this.byContainer.set(containerId, streams);
    }
    streams.set(stream, Date.now());
    stream.once("close", () => {
      const current = this.byContainer.get(containerId);
      current?.delete(stream);
      if (current?.size === 0) this.byContainer.delete(containerId);
    });
  }

  /** Open connections, in all or in one container. */
  count(containerId?: string): number {
    if (containerId !== undefined) return this.byContainer.get(containerId)?.size ?? 0;
    let total = 0;
    for (const streams of this.byContainer.values()) total += streams.size;
    return total;
  }

  /**
   * Closes the connections to processes of this container (it was removed, replaced or died);
   * with `openedBefore`, only those opened before then (a late "die" event must not close the
   * connections of a container started again since).
   */
  destroyContainer(containerId: string, openedBefore = Infinity): number {
    let closed = openedBefore === Infinity ? this.destroyStarting(containerId) : 0;
    for (const [stream, openedAt] of this.byContainer.get(containerId) ?? []) {
      if (openedAt >= openedBefore) continue;
      stream.destroy();
      closed += 1;
    }
    return closed;
  }

  /** Exec starts in flight: their connection is not ours yet (see begin). */
  private starting = 0;
  private idle: Array<() => void> = [];

  /**
   * An exec start is on its way: call the returned function once the engine client's start has
   * settled (its socket, if any, is then in our hands or destroyed). Until then the connection is
   * the client's alone: a process that exits meanwhile would leave it open (`settled`).
   */
  begin(): () => void {
    this.starting += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.starting -= 1;
      if (this.starting > 0) return;
      const idle = this.idle;
      this.idle = [];
      for (const wake of idle) wake();
    };
  }

  /** Resolves once no exec start is in flight, or after `withinMs` (shutdown: after destroyAll). */
  async settled(withinMs: number): Promise<void> {
    if (this.starting === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idle.push(resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, withinMs))),
    ]);
    clearTimeout(timer);
  }

  /** Closes every connection, and any opened later (shutdown). */
  destroyAll(): number {
    this.closed = true;
    let total = this.destroyStarting(null);
    for (const containerId of [...this.byContainer.keys()]) total += this.destroyContainer(containerId);
    return total;
  }
}
