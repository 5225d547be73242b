/**
 * How much of the sidecar one workspace may hold, and the sidecar in all. Every tenant's traffic
 * passes through this one process, so a workspace that opens connections without end (a loop of
 * CONNECTs to a destination that holds them) would otherwise take the descriptors every other
 * tenant needs. Counted here, per workspace:
 *   - connections accepted on each of its sockets (proxy.sock, model.sock, api.sock);
 *   - the egress proxy's upstream connections: CONNECT tunnels and forwarded http:// requests
 *     (one descriptor each, on top of the client's), bounded together;
 *   - requests in flight through the API proxy (several can be pipelined on one connection).
 * Past the workspace's bound a new one is answered 429 `too_many_connections`; past the sidecar's
 * total (accepted connections and upstream connections of every workspace, about one descriptor
 * each) 503 `sidecar_at_capacity`; and when the sidecar's own descriptors near their limit
 * (descriptor-guard.ts), 503 `sidecar_overloaded`. The answers carry `x-alive-egress-error`.
 * A refused connection never reaches the proxy behind the socket (boundConnections).
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { openAiErrorBody } from "../model-proxy/replies.js";
import type { WorkspaceConnections } from "../service.js";

/** What workspace.list shows of a workspace's connections (`network.connections`). */
export type { WorkspaceConnections };

export const SOCKET_KINDS = ["proxy", "model", "api"] as const;
/** Which of a workspace's sockets a connection came in on. */
export type SocketKind = (typeof SOCKET_KINDS)[number];
/** What the sidecar opens or forwards for a workspace: a tunnel or an http:// request through the egress proxy, a request to Alive's API. */
export type UpstreamKind = "tunnel" | "request" | "apiRequest";
/** Why a connection or request was refused for a bound: the value of `x-alive-egress-error`. */
export type LimitReason = "too_many_connections" | "sidecar_at_capacity" | "sidecar_overloaded";

/** The header naming why a connection or request was refused for a bound (the egress proxy's own errors carry it too). */
export const LIMIT_HEADER = "x-alive-egress-error";

export const DEFAULT_CONNECTIONS_PER_WORKSPACE = 256;
export const DEFAULT_CONNECTIONS_TOTAL = 8192;

export type Admission =
  { ok: true; release: () => void } | { ok: false; status: 429 | 503; reason: LimitReason; message: string };

export interface ConnectionLimitsOptions {
  /** Connections per workspace and socket; also its tunnels plus forwarded requests, and its API requests in flight. */
  perWorkspace: number;
  /** Accepted connections plus upstream connections across every workspace. */
  total: number;
  /** Whether the sidecar's descriptors are near their limit, told how many the proxies hold (descriptor-guard.ts). */
  overloaded?: (held: number) => { overloaded: boolean; open: number; limit: number };
  /** Called for every refusal (the metrics); never with a workspace id. */
  onRefused?: (kind: SocketKind | UpstreamKind, reason: LimitReason) => void;
}

type Counted = Record<SocketKind | UpstreamKind, number>;

interface WorkspaceCounts extends Counted {
  refusedForLimit: number;
  cut: number;
}

/** The kinds that hold a descriptor of their own (an API request waits in its agent's queue for a connection instead). */
const HOLDS_DESCRIPTOR: ReadonlySet<SocketKind | UpstreamKind> = new Set([
  "proxy",
  "model",
  "api",
  "tunnel",
  "request",
]);

export class ConnectionLimits {
  readonly #options: ConnectionLimitsOptions;
  readonly #workspaces = new Map<string, WorkspaceCounts>();
  readonly #totals: Counted = { proxy: 0, model: 0, api: 0, tunnel: 0, request: 0, apiRequest: 0 };
  /** Descriptors the proxies hold: accepted connections and upstream connections. */
  #held = 0;
  /** Refused connections held open for their answer to be read (boundConnections). */
  #lingering = 0;

  constructor(options: ConnectionLimitsOptions) {
    this.#options = options;
  }

  /** Descriptors the proxies hold now (accepted connections and upstream connections). */
  get held(): number {
    return this.#held;
  }

  /** A connection accepted on one of the workspace's sockets: admitted (release it when it closes) or refused. */
  admitConnection(workspaceId: string, kind: SocketKind): Admission {
    return this.#admit(workspaceId, kind, this.#workspace(workspaceId)[kind], `connections on its ${kind}.sock`);
  }

  /** A tunnel, forwarded request or API request about to be opened for the workspace. */
  admitUpstream(workspaceId: string, kind: UpstreamKind): Admission {
    const counts = this.#workspace(workspaceId);
    // Tunnels and forwarded requests share one bound: each holds an upstream connection.
    const used = kind === "apiRequest" ? counts.apiRequest : counts.tunnel + counts.request;
    const what =
      kind === "apiRequest"
        ? "requests to Alive's API in flight"
        : "tunnels and forwarded requests open through its egress proxy";
    return this.#admit(workspaceId, kind, used, what);
  }

  /** A refused connection may be held open for its answer to be read: true, then giveLinger() when it closes; false past MAX_LINGERING. */
  takeLinger(): boolean {
    if (this.#lingering >= MAX_LINGERING) return false;
    this.#lingering++;
    return true;
  }

  giveLinger(): void {
    this.#lingering--;
  }

  /** A tunnel or forwarded request of the workspace was cut (idle, too old, or closed when its egress narrowed). */
  noteCut(workspaceId: string): void {
    this.#workspace(workspaceId).cut++;
  }

  counts(workspaceId: string): WorkspaceConnections {
    const c = this.#workspaces.get(workspaceId);
    if (c === undefined)
      return { proxy: 0, model: 0, api: 0, tunnels: 0, requests: 0, apiRequests: 0, refusedForLimit: 0, cut: 0 };
    return {
      proxy: c.proxy,
      model: c.model,
      api: c.api,
      tunnels: c.tunnel,
      requests: c.request,
      apiRequests: c.apiRequest,
      refusedForLimit: c.refusedForLimit,
      cut: c.cut,
    };
  }

  /** Open connections and requests across every workspace, by kind (the metrics' gauge). */
  totals(): Readonly<Counted> {
    return { ...this.#totals };
  }

  /**
   * Drops a workspace's counters (its sockets are no longer served). Its connections, closing now,
   * still give back what they hold of the sidecar's total; if it is served again it starts from 0.
   */
  forget(workspaceId: string): void {
    this.#workspaces.delete(workspaceId);
  }

  #workspace(workspaceId: string): WorkspaceCounts {
    let counts = this.#workspaces.get(workspaceId);
    if (counts === undefined) {
      counts = { proxy: 0, model: 0, api: 0, tunnel: 0, request: 0, apiRequest: 0, refusedForLimit: 0, cut: 0 };
      this.#workspaces.set(workspaceId, counts);
    }
    return counts;
  }

  #admit(workspaceId: string, kind: SocketKind | UpstreamKind, used: number, what: string): Admission {
    const counts = this.#workspace(workspaceId);
    const { perWorkspace, total } = this.#options;
    const holds = HOLDS_DESCRIPTOR.has(kind);
    let refusal: Admission | null = null;
    if (used >= perWorkspace) {
      refusal = {
        ok: false,
        status: 429,
        reason: "too_many_connections",
        message: `this workspace holds ${used} ${what}, its most (ALIVE_CODEX_PROXY_CONNECTIONS_PER_WORKSPACE=${perWorkspace}); close some and try again`,
      };
    } else if (holds && this.#held >= total) {
      refusal = {
        ok: false,
        status: 503,
        reason: "sidecar_at_capacity",
        message: `the sidecar holds ${this.#held} connections for all its workspaces, its most (ALIVE_CODEX_PROXY_CONNECTIONS_TOTAL=${total}); try again shortly`,
      };
    } else if (holds) {
      const guard = this.#options.overloaded?.(this.#held);
      if (guard?.overloaded) {
        refusal = {
          ok: false,
          status: 503,
          reason: "sidecar_overloaded",
          message: `the sidecar has ${guard.open} of its ${guard.limit} open files in use and takes no new connections until some close; try again shortly`,
        };
      }
    }
    if (refusal !== null) {
      counts.refusedForLimit++;
      this.#options.onRefused?.(kind, refusal.reason);
      return refusal;
    }
    counts[kind]++;
    this.#totals[kind]++;
    if (holds) this.#held++;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        counts[kind]--;
        this.#totals[kind]--;
        if (holds) this.#held--;
      },
    };
  }
}

/** The whole HTTP/1.1 answer to a connection or request refused for a bound. */
export function limitAnswer(kind: SocketKind, refusal: Extract<Admission, { ok: false }>): string {
  const json = kind === "model";
  const body = json
    ? openAiErrorBody(refusal.message, "server_error", refusal.reason)
    : `alive-codex: ${refusal.reason}: ${refusal.message}\n`;
  const reason = refusal.status === 429 ? "Too Many Requests" : "Service Unavailable";
  return (
    `HTTP/1.1 ${refusal.status} ${reason}\r\n` +
    `content-type: ${json ? "application/json" : "text/plain; charset=utf-8"}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `${LIMIT_HEADER}: ${refusal.reason}\r\n` +
    "retry-after: 1\r\n" +
    "connection: close\r\n\r\n" +
    body
  );
}

/** How long a refused connection is kept for its client to send its request and read the answer. */
const REFUSED_LINGER_MS = 2000;
/** Refused connections kept so across the sidecar; past it one is closed as soon as the answer is written. */
const MAX_LINGERING = 256;

/**
 * Counts the server's connections against `limits`. A connection over a bound never reaches the
 * server: it gets the answer, then a half-close, and what the client sends (its request) is read
 * and dropped until it closes, for at most two seconds. Closing at once would not do: the client's
 * own write of its request would fail (EPIPE) and most clients would then report a reset, not the
 * answer. Past MAX_LINGERING such connections across the sidecar (a flood), one is closed at once.
 *
 * The http.Server's own "connection" listener (which attaches its HTTP parser) is taken off and
 * called for admitted connections only. Returns how to drop the refused connections still held
 * (when the server closes).
 */
export function boundConnections(
  server: Server,
  limits: ConnectionLimits,
  workspaceId: string,
  kind: SocketKind,
): () => void {
  const own = server.listeners("connection");
  if (own.length !== 1)
    throw new Error(
      `cannot bound the connections of the ${kind} socket: expected the HTTP server's own connection listener alone, found ${own.length}`,
    );
  const serve = own[0] as (socket: Socket) => void;
  server.removeListener("connection", serve);
  const lingering = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    const admission = limits.admitConnection(workspaceId, kind);
    if (admission.ok) {
      socket.once("close", admission.release);
      serve.call(server, socket);
      return;
    }
    socket.on("error", () => socket.destroy());
    socket.end(limitAnswer(kind, admission));
    if (!limits.takeLinger()) {
      socket.destroy();
      return;
    }
    lingering.add(socket);
    socket.resume();
    const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
    timer.unref();
    socket.once("close", () => {
      clearTimeout(timer);
      lingering.delete(socket);
      limits.giveLinger();
    });
  });
  return () => {
    for (const socket of lingering) socket.destroy();
  };
}
