/**
 * One client connection: reads lines, dispatches requests concurrently, answers each exactly once,
 * and forwards a turn's events as notifications on the same connection.
 *
 * Disconnect policy (docs/protocol.md): when the client stops sending (EOF) its turn.run requests are
 * cancelled at once and everything else in flight is still answered; when the connection closes, every
 * request still in flight has its signal aborted. Nothing a client started outlives it.
 */
import type { Socket } from "node:net";
import { ErrorCode, SidecarError, isAbortError, toRpcError, type RpcErrorObject } from "../errors.js";
import type { Logger } from "../log.js";
import type { SidecarService } from "../service.js";
import type { WorkspacePolicy } from "../policy/workspace-policy.js";
import { MessageWriter, readLines, serializeMessage, type LineChunk } from "./framing.js";
import {
  errorResponse,
  notificationMessage,
  parseMessage,
  successResponse,
  type Message,
  type NotificationMessage,
  type RequestId,
  type RequestMessage,
} from "./messages.js";
import type { ServedMethod } from "./methods.js";
import type { MethodContext } from "./protocol.js";

/** Output a client may leave unread before it is dropped, by default. */
export const MAX_UNREAD_BYTES = 64 * 1024 * 1024;

export interface ServerConnectionOptions {
  socket: Socket;
  methods: ReadonlyMap<string, ServedMethod>;
  service: SidecarService;
  policy: WorkspacePolicy;
  log: Logger;
  maxLineBytes: number;
  maxInFlight: number;
  /** Output the client may leave unread before the connection is dropped. */
  maxUnreadBytes: number;
}

interface InFlight {
  method: ServedMethod;
  controller: AbortController;
  done: Promise<void>;
}

export class ServerConnection {
  /** Resolves once the socket is fully closed. */
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  readonly #writer: MessageWriter;
  readonly #options: ServerConnectionOptions;
  readonly #log: Logger;
  readonly #inFlight = new Map<RequestId, InFlight>();
  /** Notifications to known methods run like requests but are never answered. */
  readonly #notifications = new Set<AbortController>();
  #inputEnded = false;

  constructor(options: ServerConnectionOptions, connectionId: number) {
    this.#options = options;
    this.#socket = options.socket;
    this.#writer = new MessageWriter(options.socket);
    this.#log = options.log.child({ connectionId });
    this.closed = new Promise((resolve) => this.#socket.once("close", () => resolve()));
    // Writes to a peer that went away fail asynchronously; they must never crash the sidecar.
    this.#socket.on("error", (error) => this.#log.debug("connection error", { error }));
    this.#socket.once("close", () => this.#abortAll("the client connection closed"));
    void this.#readLoop();
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Ends the connection: aborts everything in flight, gives the answers (cancelled turns, mostly)
   * up to `graceMs` to go out, then ends the socket and destroys it if the peer does not close.
   */
  async close(graceMs = 1000): Promise<void> {
    this.#abortAll("the sidecar is shutting down");
    await settleWithin(
      [...this.#inFlight.values()].map((entry) => entry.done),
      graceMs,
    );
    this.#socket.end();
    const closedInTime = await settleWithin([this.closed], graceMs);
    if (!closedInTime) this.#socket.destroy();
    await this.closed;
  }

  async #readLoop(): Promise<void> {
    try {
      for await (const chunk of readLines(this.#socket, { maxLineBytes: this.#options.maxLineBytes }))
        this.#onChunk(chunk);
    } catch (error) {
      this.#log.debug("connection read ended with an error", { error });
      this.#socket.destroy();
      return;
    }
    this.#onInputEnded();
  }

  #onChunk(chunk: LineChunk): void {
    if (chunk.kind === "oversized") {
      const reason = `a line must be at most ${chunk.maxLineBytes} bytes; the rest of it was discarded`;
      this.#send(
        errorResponse(null, {
          code: ErrorCode.invalidRequest,
          message: `invalid request: line too long`,
          data: { reason },
        }),
      );
      return;
    }
    if (chunk.kind === "invalid_utf8") {
      this.#send(
        errorResponse(null, { code: ErrorCode.parseError, message: "parse error: the line is not valid UTF-8" }),
      );
      return;
    }
    const incoming = parseMessage(chunk.text);
    switch (incoming.kind) {
      case "invalid":
        this.#send(errorResponse(incoming.id, incoming.error));
        return;
      case "response":
        this.#log.debug("ignored a response sent to the server", { id: incoming.message.id });
        return;
      case "notification":
        this.#runNotification(incoming.message);
        return;
      case "request":
        this.#runRequest(incoming.message);
        return;
    }
  }

  #runRequest(request: RequestMessage): void {
    const { id, method } = request;
    if (this.#inFlight.has(id)) {
      this.#send(
        errorResponse(id, {
          code: ErrorCode.invalidRequest,
          message: "invalid request: a request with this id is already in flight",
          data: { field: "id", reason: "ids of requests in flight must be unique on a connection" },
        }),
      );
      return;
    }
    const served = this.#options.methods.get(method);
    if (served === undefined) {
      this.#send(
        errorResponse(id, {
          code: ErrorCode.methodNotFound,
          message: `unknown method ${JSON.stringify(method)}`,
          data: { field: "method", reason: "not a method of this sidecar" },
        }),
      );
      return;
    }
    if (this.#inFlight.size >= this.#options.maxInFlight) {
      this.#send(
        errorResponse(id, {
          code: ErrorCode.limitReached,
          message: "too many requests in flight on this connection",
          data: { reason: `at most ${this.#options.maxInFlight} requests may be in flight per connection` },
        }),
      );
      return;
    }
    const controller = new AbortController();
    const entry: InFlight = { method: served, controller, done: Promise.resolve() };
    this.#inFlight.set(id, entry);
    entry.done = (async () => {
      try {
        const result = await served.run(request.params, this.#context(controller.signal));
        this.#sendResult(id, method, result);
      } catch (error) {
        this.#send(errorResponse(id, this.#describeFailure(error, method, id, controller.signal)));
      } finally {
        this.#inFlight.delete(id);
        this.#endIfDrained();
      }
    })();
  }

  #runNotification(notification: NotificationMessage): void {
    const served = this.#options.methods.get(notification.method);
    if (served === undefined) return; // Unknown notifications are ignored, as JSON-RPC asks.
    const controller = new AbortController();
    this.#notifications.add(controller);
    void (async () => {
      try {
        await served.run(notification.params, this.#context(controller.signal));
      } catch (error) {
        this.#describeFailure(error, notification.method, null, controller.signal);
      } finally {
        this.#notifications.delete(controller);
      }
    })();
  }

  #context(signal: AbortSignal): MethodContext {
    return {
      service: this.#options.service,
      policy: this.#options.policy,
      log: this.#log,
      signal,
      notifyLine: (line) => {
        try {
          this.#writer.writeLine(line);
          this.#checkBacklog();
        } catch (error) {
          this.#log.error("could not send a notification", { error });
        }
      },
      notify: (method, params) => {
        // Called from inside the service (a turn's onEvent): it must never throw back into it.
        try {
          this.#send(notificationMessage(method, params));
        } catch (error) {
          this.#log.error("could not send a notification", { method, error });
        }
      },
    };
  }

  /** Maps a failure to its wire error; unexpected ones are logged here, once, and leave no stack on the wire. */
  #describeFailure(error: unknown, method: string, id: RequestId | null, signal: AbortSignal): RpcErrorObject {
    if (error instanceof SidecarError) {
      this.#log.debug("request refused", { method, id, code: error.code, error });
    } else if (signal.aborted && isAbortError(error)) {
      this.#log.debug("request abandoned by its client", { method, id });
    } else {
      this.#log.error("request failed unexpectedly", { method, id, error });
    }
    return toRpcError(error);
  }

  #sendResult(id: RequestId, method: string, result: unknown): void {
    let line: string;
    try {
      line = serializeMessage(successResponse(id, result));
    } catch (error) {
      this.#log.error("could not serialise a result", { method, id, error });
      this.#send(errorResponse(id, toRpcError(error)));
      return;
    }
    this.#writer.writeLine(line);
    this.#checkBacklog();
  }

  #send(message: Message): void {
    this.#writer.write(message);
    this.#checkBacklog();
  }

  /** A client that stops reading would make the sidecar buffer a long turn's events forever: drop it (its turns are cancelled). */
  #checkBacklog(): void {
    if (this.#socket.writableLength <= this.#options.maxUnreadBytes || this.#socket.destroyed) return;
    this.#log.warn("dropping a client that stopped reading", { unreadBytes: this.#socket.writableLength });
    this.#socket.destroy();
  }

  #onInputEnded(): void {
    this.#inputEnded = true;
    for (const entry of this.#inFlight.values()) {
      if (entry.method.cancelOnEof)
        entry.controller.abort(new DOMException("the client stopped sending (EOF)", "AbortError"));
    }
    this.#endIfDrained();
  }

  /** After EOF, the connection ends once every request has been answered. */
  #endIfDrained(): void {
    if (this.#inputEnded && this.#inFlight.size === 0 && this.#writer.writable) this.#socket.end();
  }

  #abortAll(reason: string): void {
    const error = new DOMException(reason, "AbortError");
    for (const entry of this.#inFlight.values()) entry.controller.abort(error);
    for (const controller of this.#notifications) controller.abort(error);
  }
}

/** Waits for every promise to settle, at most `ms`; true when all settled in time. */
async function settleWithin(promises: Array<Promise<unknown>>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([Promise.allSettled(promises).then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
