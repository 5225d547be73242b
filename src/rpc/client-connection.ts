/**
 * The client's side of one connection to the sidecar's socket: requests written as lines and
 * matched to their answers by id, turn.event notifications routed by turn id to the TurnRun that
 * follows that turn, and every pending call failed once when the connection goes away.
 */
import net from "node:net";
import { MessageWriter, SIDECAR_LINE_MAX_BYTES, readLines } from "./framing.js";
import { notificationMessage, parseMessage, requestMessage, type RequestId, type ResponseMessage } from "./messages.js";
// Types only: the client never loads the server's parsers and handlers.
import type { MethodName, MethodParams, MethodResult } from "./methods.js";
import { TURN_EVENT, type TurnEventParams } from "./protocol.js";
import { SidecarConnectionError, SidecarRpcError } from "./client-errors.js";
import type { CallOptions } from "./client-options.js";
import type { TurnRun } from "./turn-run.js";

interface PendingCall {
  method: string;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

export class ClientConnection {
  readonly socketPath: string;
  readonly #socket: net.Socket;
  readonly #writer: MessageWriter;
  readonly #pending = new Map<RequestId, PendingCall>();
  readonly #turns = new Map<string, TurnRun>();
  readonly #closed: Promise<void>;
  #nextId = 1;
  #closeError: SidecarConnectionError | null = null;
  #closedByCaller = false;

  private constructor(socketPath: string, socket: net.Socket) {
    this.socketPath = socketPath;
    this.#socket = socket;
    this.#writer = new MessageWriter(socket);
    socket.on("error", () => {}); // 'close' follows, and is where pending calls are failed.
    this.#closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.once("close", () => this.#onClosed());
    void this.#readLoop();
  }

  /** Connects to the sidecar's socket. Rejects with SidecarConnectionError when nobody answers there. */
  static open(socketPath: string, timeoutMs: number): Promise<ClientConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new SidecarConnectionError(socketPath, `no answer from the sidecar at ${socketPath} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new ClientConnection(socketPath, socket));
      });
      socket.once("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const why =
          error.code === "ENOENT"
            ? "no socket there"
            : error.code === "ECONNREFUSED"
              ? "nothing listening"
              : error.message;
        reject(
          new SidecarConnectionError(socketPath, `cannot reach the sidecar at ${socketPath}: ${why}`, { cause: error }),
        );
      });
    });
  }

  /** close() was called: a reattaching run does not reconnect. */
  get closedByCaller(): boolean {
    return this.#closedByCaller;
  }

  /** Sends turn.event notifications for `turnId` to `run` until the returned function is called (or another run takes the turn). */
  routeTurn(turnId: string, run: TurnRun): () => void {
    this.#turns.set(turnId, run);
    return () => {
      if (this.#turns.get(turnId) === run) this.#turns.delete(turnId);
    };
  }

  call<M extends MethodName>(method: M, params: MethodParams<M>, options: CallOptions = {}): Promise<MethodResult<M>> {
    if (this.#closeError !== null) return Promise.reject(this.#closeError);
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const id = this.#nextId++;
    return new Promise<MethodResult<M>>((resolve, reject) => {
      const onAbort = (): void => {
        this.#pending.delete(id);
        reject(abortReason(signal as AbortSignal));
      };
      const cleanup = (): void => signal?.removeEventListener("abort", onAbort);
      this.#pending.set(id, {
        method,
        resolve: (result) => {
          cleanup();
          resolve(result as MethodResult<M>);
        },
        reject: (error) => {
          cleanup();
          reject(error);
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#writer.write(requestMessage(id, method, params));
    });
  }

  notify(method: string, params?: unknown): void {
    this.#writer.write(notificationMessage(method, params));
  }

  async close(): Promise<void> {
    this.#closedByCaller = true;
    this.#closeError ??= new SidecarConnectionError(this.socketPath, "the client was closed");
    this.#socket.end();
    this.#socket.destroySoon();
    await this.#closed;
  }

  async #readLoop(): Promise<void> {
    try {
      for await (const chunk of readLines(this.#socket, { maxLineBytes: SIDECAR_LINE_MAX_BYTES })) {
        if (chunk.kind !== "line") continue;
        const incoming = parseMessage(chunk.text);
        if (incoming.kind === "response") this.#onResponse(incoming.message);
        else if (incoming.kind === "notification" && incoming.message.method === TURN_EVENT)
          this.#onTurnEvent(incoming.message.params);
      }
    } catch {
      // The 'close' handler fails what is pending.
    }
    this.#socket.end();
  }

  #onResponse(response: ResponseMessage): void {
    if (response.id === null) return; // A -32700/-32600 for a line we did not send.
    const pending = this.#pending.get(response.id);
    if (pending === undefined) return;
    this.#pending.delete(response.id);
    if ("error" in response)
      pending.reject(
        new SidecarRpcError(pending.method, response.error.code, response.error.message, response.error.data),
      );
    else pending.resolve(response.result);
  }

  #onTurnEvent(params: unknown): void {
    const { turnId, seq, event } = (params ?? {}) as Partial<TurnEventParams>;
    if (typeof turnId !== "string" || typeof seq !== "number" || event === undefined) return;
    this.#turns.get(turnId)?.pushEvent(turnId, { seq, event });
  }

  #onClosed(): void {
    const error =
      this.#closeError ??
      new SidecarConnectionError(
        this.socketPath,
        `the connection to the sidecar at ${this.socketPath} closed with ${this.#pending.size} call(s) pending`,
      );
    this.#closeError = error;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of pending) call.reject(error);
  }
}

/** What a call abandoned by its signal rejects with. */
export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException("the operation was aborted", "AbortError");
}
