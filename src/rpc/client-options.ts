/** The options of a SidecarClient: of its connection, of any call, and of following a turn. */

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

export const REATTACH_DEFAULTS: Required<ReattachOptions> = { attempts: 20, initialDelayMs: 100, maxDelayMs: 2000 };

export interface AttachTurnOptions {
  /** Only events with a larger seq; absent: all of them. */
  afterSeq?: number;
  signal?: AbortSignal;
}
