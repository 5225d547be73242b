/**
 * The engine client's connections, known to us: an http.Agent that keeps every socket it opens until
 * it closes. An exec start (`POST /exec/<id>/start`, hijacked) holds its socket from the request on;
 * the client hands it to startExec only once the engine has upgraded it, and a start in flight when
 * its workspace goes, or the process ends, would leave it open unseen (CI runs left such sockets,
 * "startExec never took it over"). With this agent, closing a container's exec connections also
 * closes those still being started (exec-streams.ts).
 */
import http from "node:http";
import type net from "node:net";

const EXEC_START = /^\/exec\/([0-9a-f]{12,64})\/start(?:\?|$)/;

export class TrackingAgent extends http.Agent {
  readonly #open = new Set<net.Socket>();

  constructor() {
    // As Node's global agent: idle connections kept (and unref'd) a while; a hijacked one leaves the pool.
    super({ keepAlive: true, scheduling: "lifo", timeout: 5000 });
  }

  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (error: Error | null, socket: net.Socket) => void,
  ): net.Socket {
    const create = http.Agent.prototype.createConnection as unknown as (
      this: http.Agent,
      options: http.ClientRequestArgs,
      callback?: (error: Error | null, socket: net.Socket) => void,
    ) => net.Socket;
    const socket = create.call(this, options, callback);
    this.#open.add(socket);
    socket.once("close", () => this.#open.delete(socket));
    return socket;
  }

  /** The open sockets of exec starts, with the exec id each carries (in flight or handed over). */
  execStarts(): Array<{ execId: string; socket: net.Socket }> {
    const out: Array<{ execId: string; socket: net.Socket }> = [];
    for (const socket of this.#open) {
      const path = (socket as net.Socket & { _httpMessage?: { path?: string } | null })._httpMessage?.path;
      const execId = path ? EXEC_START.exec(path)?.[1] : undefined;
      if (execId !== undefined && !socket.destroyed) out.push({ execId, socket });
    }
    return out;
  }
}
