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
// Types only: the client never loads the server's parsers and handlers.
import type { MethodName, MethodParams, MethodResult } from "./methods.js";
import { ClientConnection, abortReason } from "./client-connection.js";
import { SidecarConnectionError } from "./client-errors.js";
import {
  REATTACH_DEFAULTS,
  type AttachTurnOptions,
  type CallOptions,
  type ReattachOptions,
  type RunTurnOptions,
  type SidecarClientOptions,
} from "./client-options.js";
import { TurnRun, type TurnEventMessage } from "./turn-run.js";

export { TurnRun, type TurnEventMessage };
export { SidecarConnectionError, SidecarRpcError } from "./client-errors.js";
export type {
  AttachTurnOptions,
  CallOptions,
  ReattachOptions,
  RunTurnOptions,
  SidecarClientOptions,
} from "./client-options.js";

/** The sidecar's methods over one connection (client-connection.ts), and turns followed across lost ones. */
export class SidecarClient {
  readonly socketPath: string;
  readonly #connection: ClientConnection;

  private constructor(connection: ClientConnection) {
    this.socketPath = connection.socketPath;
    this.#connection = connection;
  }

  /** Connects to the sidecar's socket. Rejects with SidecarConnectionError when nobody answers there. */
  static async connect(socketPath: string, options: SidecarClientOptions = {}): Promise<SidecarClient> {
    return new SidecarClient(await ClientConnection.open(socketPath, options.timeoutMs ?? 5000));
  }

  health(options?: CallOptions): Promise<MethodResult<"sidecar.health">> {
    return this.call("sidecar.health", {}, options);
  }

  ensureWorkspace(
    params: MethodParams<"workspace.ensure">,
    options?: CallOptions,
  ): Promise<MethodResult<"workspace.ensure">> {
    return this.call("workspace.ensure", params, options);
  }

  listWorkspaces(options?: CallOptions): Promise<MethodResult<"workspace.list">> {
    return this.call("workspace.list", {}, options);
  }

  removeWorkspace(
    workspaceId: string,
    removeOptions: { purgeHome?: boolean } = {},
    options?: CallOptions,
  ): Promise<MethodResult<"workspace.remove">> {
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
    const run: TurnRun = new TurnRun(
      Promise.resolve().then(() => this.#tracked(turnId, run, "turn.attach", params, options.signal)),
    );
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
    if (options.reattach)
      return this.#runReattaching({ ...params, turnId }, options.reattach === true ? {} : options.reattach, signal);
    const resultPromise = this.call("turn.run", { ...params, turnId });
    const run = new TurnRun(resultPromise);
    const forget = this.#connection.routeTurn(turnId, run);
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
  #runReattaching(
    params: MethodParams<"turn.run"> & { turnId: string },
    reattach: ReattachOptions,
    signal: AbortSignal | undefined,
  ): TurnRun {
    const { attempts, initialDelayMs, maxDelayMs } = { ...REATTACH_DEFAULTS, ...reattach };
    const { turnId } = params;
    const wire = {
      ...params,
      options: { ...params.options, onDisconnect: params.options?.onDisconnect ?? "continue" },
    };
    /** The connection the turn is followed on now, once it is not this one. */
    let current: SidecarClient | null = null;
    const follow = async (run: TurnRun): Promise<MethodResult<"turn.run">> => {
      let lost: unknown;
      try {
        return await this.#tracked(turnId, run, "turn.run", wire);
      } catch (error) {
        if (!(error instanceof SidecarConnectionError) || this.#connection.closedByCaller) throw error;
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
      throw new SidecarConnectionError(
        this.socketPath,
        `lost the connection to the sidecar at ${this.socketPath} and could not reattach to turn ${turnId} in ${attempts} attempts`,
        { cause: lost },
      );
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
  async #tracked<M extends "turn.run" | "turn.attach">(
    turnId: string,
    run: TurnRun,
    method: M,
    params: MethodParams<M>,
    signal?: AbortSignal,
  ): Promise<MethodResult<M>> {
    const forget = this.#connection.routeTurn(turnId, run);
    try {
      return await this.call(method, params, signal ? { signal } : {});
    } finally {
      forget();
    }
  }

  /** Any method, typed by its descriptor (./methods.ts). */
  call<M extends MethodName>(method: M, params: MethodParams<M>, options: CallOptions = {}): Promise<MethodResult<M>> {
    return this.#connection.call(method, params, options);
  }

  /** Sends a notification (no answer). */
  notify(method: string, params?: unknown): void {
    this.#connection.notify(method, params);
  }

  /** Closes the connection. Pending calls reject; turns still running on the sidecar are cancelled by it. */
  close(): Promise<void> {
    return this.#connection.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
