/** The egress proxy's http.Server: it knows the sockets it opened and the upstream connections it holds, to end them. */
import http from "node:http";
import type { Duplex } from "node:stream";
import type { CutReason } from "./upstream-watch.js";

/**
 * An http.Server whose closeAllConnections() also ends the tunnels and upstream sockets it opened,
 * and whose closeUpstreams() ends only its tunnels and forwarded requests.
 */
export class EgressProxyServer extends http.Server {
  readonly #open = new Set<Duplex>();
  /** How to cut each open tunnel and forwarded request. */
  readonly #upstreams = new Set<(reason: CutReason) => void>();
  #generation = 0;

  track(socket: Duplex): void {
    this.#open.add(socket);
    socket.once("close", () => this.#open.delete(socket));
  }

  override closeAllConnections(): void {
    super.closeAllConnections();
    for (const socket of this.#open) socket.destroy();
  }

  /** Counts up at each closeUpstreams(): an upstream connected across one is not used (it was decided under the old policy). */
  get generation(): number {
    return this.#generation;
  }

  /** Holds `cut` until the returned function is called (the upstream connection closed). */
  holdUpstream(cut: (reason: CutReason) => void): () => void {
    this.#upstreams.add(cut);
    return () => this.#upstreams.delete(cut);
  }

  /**
   * Ends every open tunnel and forwarded request, both ends, and any being connected now (a turn
   * narrowed the workspace's egress: what was opened under the wider policy must not outlive it).
   * Returns how many were open. Connections without an upstream (idle keep-alive) stay: their next
   * request meets the policy in force.
   */
  closeUpstreams(): number {
    this.#generation++;
    const cuts = [...this.#upstreams];
    for (const cut of cuts) cut("egress_narrowed");
    return cuts.length;
  }
}
