/**
 * The typed client Alive's server uses: one Unix-socket connection, many calls in flight, turn events
 * routed to the TurnRun that asked for them.
 *
 *   const client = await SidecarClient.connect("/run/alive-codex/sidecar.sock");
 *   const run = client.runTurn({ workspaceId, input: "fix the tests" }, { signal });
 *   for await (const { seq, event } of run) render(event);
 *   const result = await run.result;
 */
import { randomUUID } from "node:crypto";
import net from "node:net";
import type { ErrorCodeValue, ErrorData } from "../errors.js";
import { MessageWriter, SIDECAR_LINE_MAX_BYTES, readLines } from "./framing.js";
import { notificationMessage, parseMessage, requestMessage, type RequestId, type ResponseMessage } from "./messages.js";
// Types only: the client never loads the server's parsers and handlers.
import type { MethodName, MethodParams, MethodResult } from "./methods.js";
import { TURN_EVENT, type TurnEventParams } from "./protocol.js";
import { TurnRun, type TurnEventMessage } from "./turn-run.js";

export { TurnRun, type TurnEventMessage };

/** An error answer from the sidecar: `code` is one of ErrorCode (or whatever a newer sidecar sends). */
export class SidecarRpcError extends Error {
  readonly code: ErrorCodeValue | (number & {});
  readonly data: ErrorData | undefined;
  readonly method: string;

  constructor(method: string, code: number, message: string, data?: ErrorData) {
    super(`${method}: ${message}`);
    this.name = "SidecarRpcError";
    this.method = method;
    this.code = code;
    this.data = data;
  }
}

/** The sidecar could not be reached, or the connection went away with calls pending. */
export class SidecarConnectionError extends Error {
  readonly socketPath: string;

  constructor(socketPath: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SidecarConnectionError";
    this.socketPath = socketPath;
  }
}

export interface SidecarClientOptions {
  /** How long connect() waits for the socket; default 5000 ms. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Abandons the call locally (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

export interface RunTurnOptions {
  /** Aborting sends turn.cancel for the turn; the result then arrives with status "cancelled". */
  signal?: AbortSignal;
  /**
   * Survive a lost connection: the turn runs with onDisconnect "continue" (unless the params say
   * otherwise), and when the socket goes away the run reconnects with backoff and attaches after the
   * last seq it delivered, so the iteration sees every event exactly once. `true` takes the defaults.
   */
  reattach?: boolean | ReattachOptions;
}

export interface ReattachOptions {
  /** Connection attempts after a loss before giving up (SidecarConnectionError); default 20. */
  attempts?: number;
  /** The first wait before reconnecting, doubled per attempt up to maxDelayMs; default 100. */
  initialDelayMs?: number;
  /** Default 2000. */
  maxDelayMs?: number;
}

export interface AttachTurnOptions {
  /** Only events with a larger seq; absent: all of them. */
  afterSeq?: number;
  signal?: AbortSignal;
}

const REATTACH_DEFAULTS: Required<ReattachOptions> = { attempts: 20, initialDelayMs: 100, maxDelayMs: 2000 };

interface PendingCall {
  method: string;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

export class SidecarClient {
  readonly socketPath: string;
  readonly #socket: net.Socket;
  readonly #writer: MessageWriter;
  readonly #pending = new Map<RequestId, PendingCall>();
  readonly #turns = new Map<string, TurnRun>();
  readonly #closed: Promise<void>;
  #nextId = 1;
  #closeError: SidecarConnectionError | null = null;
  /** close() was called: a reattaching run does not reconnect. */
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
  static connect(socketPath: string, options: SidecarClientOptions = {}): Promise<SidecarClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SidecarConnectionError(socketPath, `no answer from the sidecar at ${socketPath} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new SidecarClient(socketPath, socket));
      });
      socket.once("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const why = error.code === "ENOENT" ? "no socket there" : error.code === "ECONNREFUSED" ? "nothing listening" : error.message;
        reject(new SidecarConnectionError(socketPath, `cannot reach the sidecar at ${socketPath}: ${why}`, { cause: error }));
      });
    });
  }

  health(options?: CallOptions): Promise<MethodResult<"sidecar.health">> {
    return this.call("sidecar.health", {}, options);
  }

  ensureWorkspace(params: MethodParams<"workspace.ensure">, options?: CallOptions): Promise<MethodResult<"workspace.ensure">> {
    return this.call("workspace.ensure", params, options);
  }

  listWorkspaces(options?: CallOptions): Promise<MethodResult<"workspace.list">> {
    return this.call("workspace.list", {}, options);
  }

  removeWorkspace(workspaceId: string, removeOptions: { purgeHome?: boolean } = {}, options?: CallOptions): Promise<MethodResult<"workspace.remove">> {
    return this.call("workspace.remove", { workspaceId, purgeHome: removeOptions.purgeHome ?? false }, options);
  }

  workspaceLogs(workspaceId: string, tail?: number, options?: CallOptions): Promise<MethodResult<"workspace.logs">> {
    return this.call("workspace.logs", tail === undefined ? { workspaceId } : { workspaceId, tail }, options);
  }

  cancelTurn(turnId: string, options?: CallOptions): Promise<MethodResult<"turn.cancel">> {
    return this.call("turn.cancel", { turnId }, options);
  }

  getTurn(turnId: string, options?: CallOptions): Promise<MethodResult<"turn.get">> {
    return this.call("turn.get", { turnId }, options);
  }

  listTurns(filter: MethodParams<"turn.list"> = {}, options?: CallOptions): Promise<MethodResult<"turn.list">> {
    return this.call("turn.list", filter, options);
  }

  /**
   * Follows a turn started elsewhere (another connection, an earlier client, a sidecar since
   * restarted): its events after `afterSeq` (journal, then live), then its result.
   */
  attachTurn(turnId: string, options: AttachTurnOptions = {}): TurnRun {
    const params = options.afterSeq === undefined ? { turnId } : { turnId, afterSeq: options.afterSeq };
    // The call starts on the next microtask, once `run` exists.
    const run: TurnRun = new TurnRun(Promise.resolve().then(() => this.#tracked(turnId, run, "turn.attach", params, options.signal)));
    return run;
  }

  /**
   * Starts a turn. Without a turnId the client picks one, so the turn's events can be told apart from
   * other turns on this connection. Aborting `signal` sends turn.cancel as soon as the turn is known.
   */
  runTurn(params: MethodParams<"turn.run">, options: RunTurnOptions = {}): TurnRun {
    const turnId = params.turnId ?? `turn-${randomUUID()}`;
    const signal = options.signal;
    if (signal?.aborted) {
      const run = new TurnRun(Promise.reject(abortReason(signal)));
      return run;
    }
    if (options.reattach) return this.#runReattaching({ ...params, turnId }, options.reattach === true ? {} : options.reattach, signal);
    const resultPromise = this.call("turn.run", { ...params, turnId });
    const run = new TurnRun(resultPromise);
    this.#turns.set(turnId, run);
    const forget = (): void => {
      this.#turns.delete(turnId);
    };
    void run.result.then(forget, forget);

    if (signal !== undefined) {
      const onAbort = (): void => {
        // Before the first event the sidecar may not know the turn yet: cancel once it does.
        void run.turnId.then(
          (id) => this.cancelTurn(id).catch(() => {}),
          () => {},
        );
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const removeListener = (): void => signal.removeEventListener("abort", onAbort);
      void run.result.then(removeListener, removeListener);
    }
    return run;
  }

  /** turn.run on this connection, then turn.attach on new ones each time the connection is lost. */
  #runReattaching(params: MethodParams<"turn.run"> & { turnId: string }, reattach: ReattachOptions, signal: AbortSignal | undefined): TurnRun {
    const { attempts, initialDelayMs, maxDelayMs } = { ...REATTACH_DEFAULTS, ...reattach };
    const { turnId } = params;
    const wire = { ...params, options: { ...params.options, onDisconnect: params.options?.onDisconnect ?? "continue" } };
    /** The connection the turn is followed on now, once it is not this one. */
    let current: SidecarClient | null = null;
    const follow = async (run: TurnRun): Promise<MethodResult<"turn.run">> => {
      let lost: unknown;
      try {
        return await this.#tracked(turnId, run, "turn.run", wire);
      } catch (error) {
        if (!(error instanceof SidecarConnectionError) || this.#closedByCaller) throw error;
        lost = error;
      }
      for (let attempt = 0; attempt < attempts; attempt++) {
        await sleep(Math.min(initialDelayMs * 2 ** attempt, maxDelayMs));
        let client: SidecarClient;
        try {
          client = await SidecarClient.connect(this.socketPath);
        } catch (error) {
          lost = error;
          continue;
        }
        current = client;
        try {
          if (signal?.aborted) void client.cancelTurn(turnId).catch(() => {});
          const after = run.lastSeq >= 0 ? { turnId, afterSeq: run.lastSeq } : { turnId };
          return await client.#tracked(turnId, run, "turn.attach", after);
        } catch (error) {
          if (!(error instanceof SidecarConnectionError)) throw error;
          lost = error;
        } finally {
          await client.close();
        }
      }
      throw new SidecarConnectionError(this.socketPath, `lost the connection to the sidecar at ${this.socketPath} and could not reattach to turn ${turnId} in ${attempts} attempts`, { cause: lost });
    };
    // The call starts on the next microtask, once `run` exists.
    const run: TurnRun = new TurnRun(Promise.resolve().then(() => follow(run)));
    if (signal !== undefined) {
      const onAbort = (): void => void (current ?? this).cancelTurn(turnId).catch(() => {});
      signal.addEventListener("abort", onAbort, { once: true });
      const removeListener = (): void => signal.removeEventListener("abort", onAbort);
      void run.result.then(removeListener, removeListener);
    }
    return run;
  }

  /** A call whose turn.event notifications for `turnId` go to `run` while it is in flight. */
  async #tracked<M extends "turn.run" | "turn.attach">(turnId: string, run: TurnRun, method: M, params: MethodParams<M>, signal?: AbortSignal): Promise<MethodResult<M>> {
    this.#turns.set(turnId, run);
    try {
      return await this.call(method, params, signal ? { signal } : {});
    } finally {
      if (this.#turns.get(turnId) === run) this.#turns.delete(turnId);
    }
  }

  /** Any method, typed by its descriptor (./methods.ts). */
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

  /** Sends a notification (no answer). */
  notify(method: string, params?: unknown): void {
    this.#writer.write(notificationMessage(method, params));
  }

  /** Closes the connection. Pending calls reject; turns still running on the sidecar are cancelled by it. */
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
        else if (incoming.kind === "notification" && incoming.message.method === TURN_EVENT) this.#onTurnEvent(incoming.message.params);
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
    if ("error" in response) pending.reject(new SidecarRpcError(pending.method, response.error.code, response.error.message, response.error.data));
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
      new SidecarConnectionError(this.socketPath, `the connection to the sidecar at ${this.socketPath} closed with ${this.#pending.size} call(s) pending`);
    this.#closeError = error;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of pending) call.reject(error);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException("the operation was aborted", "AbortError");
}
