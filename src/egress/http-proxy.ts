/**
 * A workspace's HTTP forward proxy: one per workspace, listening on that workspace's Unix socket
 * (the container's only way out, through a forwarder on its loopback). It tunnels CONNECT host:port
 * and forwards absolute-form http:// requests, each under the workspace's egress policy (see
 * destination.ts for the order of checks). Refusals are 403 with `x-alive-egress-refused: <reason>`.
 * Only the operator's ports are connected to (443 and 80 by default; an internal destination keeps
 * its own). Each tunnel and forwarded request holds an upstream connection: it is admitted against
 * the workspace's bounds first (connection-limits.ts; 429/503 with `x-alive-egress-error`), and
 * cut when it idles or outlives its maximum (upstream-watch.ts), or when closeUpstreams() is called.
 * Request paths, queries and headers are never logged: they may hold credentials. What the client is
 * told never names what a name resolved to; the log may, and its lines are rate-limited per
 * workspace (a tenant decides how many requests fail).
 */
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream";
import type { Logger } from "../log.js";
import { LogLimiter, limitedLog } from "../shared/log-limiter.js";
import type { AddressSet } from "../policy/addresses.js";
import { hostAddressesFromInterfaces } from "./host-addresses.js";
import type { Admission, LimitReason } from "./connection-limits.js";
import {
  ConnectFailure,
  connectToAny,
  parseAbsoluteTarget,
  parseConnectTarget,
  resolveDestination,
  type RefusalReason,
  type Resolver,
  type Target,
} from "./destination.js";
import { DEFAULT_EGRESS_PORTS, isPortAllowed, type InternalDestination } from "../policy/internal-destinations.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import { NameResolver } from "./resolver.js";
import { DEFAULT_TUNNEL_IDLE_MS, DEFAULT_TUNNEL_MAX_MS, watchUpstream, type CutReason } from "./upstream-watch.js";

export const REFUSED_HEADER = "x-alive-egress-refused";
export const ERROR_HEADER = "x-alive-egress-error";

export interface EgressProxyOptions {
  /** Read for every request: the workspace's policy can change while the proxy runs. */
  policy: () => EgressPolicy;
  internal?: readonly InternalDestination[];
  /** The workspace's share of the sidecar's resolver (NameResolver.forWorkspace). Default: a resolver of its own, bounded by dnsTimeoutMs. */
  resolve?: Resolver;
  dnsTimeoutMs?: number;
  /** The host's own addresses. Default: os.networkInterfaces(), read for every request. */
  hostAddresses?: () => readonly string[];
  /** The operator's further addresses of the host (ALIVE_CODEX_HOST_ADDRESSES), refused as host_address. */
  operatorHostAddresses?: AddressSet;
  /** Per attempted address. Default 10 s. */
  connectTimeoutMs?: number;
  /** Called for every refusal (for counting); its log line is rate-limited. */
  onRefusal?: (host: string, port: number, reason: RefusalReason) => void;
  /** Ports connected to, for CONNECT and http:// alike; an internal destination keeps its own. Default 443 and 80. */
  allowedPorts?: readonly number[];
  /** Asked before a tunnel or forwarded request opens its upstream connection; a refusal is answered instead. Default: no bound. */
  admitUpstream?: (kind: UpstreamKind) => Admission;
  /** A tunnel or forwarded request is cut after this long without a byte either way. Default 5 min. */
  idleTimeoutMs?: number;
  /** ... and once this old. Default 1 h. */
  maxLifetimeMs?: number;
  /** Called when a tunnel or forwarded request is cut (idle, lifetime, or closeUpstreams()). */
  onCut?: (kind: UpstreamKind, reason: CutReason) => void;
  log: Logger;
  /** Rate-limits the log lines a client causes (refused, lookup failed, connect failed), under `logKey`. Default: one of its own. */
  logLimiter?: LogLimiter;
  /** The key of this proxy's lines in logLimiter (the workspace). Default "". */
  logKey?: string;
}

/** What holds an upstream connection of the egress proxy. */
export type UpstreamKind = "tunnel" | "request";

/** dns_busy: the workspace already has its most lookups in flight and waiting (429). */
export type EgressErrorCode = "bad_request" | "dns_failed" | "dns_busy" | "connect_failed" | "connect_timeout" | "upstream_failed" | "egress_changed" | LimitReason;

interface Failure {
  status: number;
  header: typeof REFUSED_HEADER | typeof ERROR_HEADER;
  code: RefusalReason | EgressErrorCode;
  message: string;
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"]);

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

export function createEgressProxy(options: EgressProxyOptions): EgressProxyServer {
  const resolve = options.resolve ?? new NameResolver({ timeoutMs: options.dnsTimeoutMs ?? 5_000 }).forWorkspace("");
  const hostAddresses = options.hostAddresses ?? hostAddressesFromInterfaces;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const log = limitedLog(options.log, options.logLimiter ?? new LogLimiter(), options.logKey ?? "");
  const allowedPorts = options.allowedPorts ?? DEFAULT_EGRESS_PORTS;
  const admitUpstream = options.admitUpstream ?? ((): Admission => ({ ok: true, release: () => undefined }));
  const timeouts = { idleMs: options.idleTimeoutMs ?? DEFAULT_TUNNEL_IDLE_MS, maxMs: options.maxLifetimeMs ?? DEFAULT_TUNNEL_MAX_MS };
  const server = new EgressProxyServer();

  /** Resolves, checks and connects; a Failure says what to answer instead. `signal`: the client went away. */
  async function open(target: Target, signal?: AbortSignal): Promise<Duplex | Failure> {
    const rules = { policy: options.policy(), internal: options.internal ?? [], resolve, hostAddresses: hostAddresses(), operatorHostAddresses: options.operatorHostAddresses };
    const resolution = await resolveDestination(target, rules, signal);
    if (!resolution.ok) {
      if (resolution.reason === "dns_failed" || resolution.reason === "dns_busy") {
        log.info(resolution.reason, "egress lookup failed", { host: target.host, port: target.port, detail: resolution.logDetail });
        const status = resolution.reason === "dns_busy" ? 429 : 502;
        return { status, header: ERROR_HEADER, code: resolution.reason, message: resolution.detail };
      }
      noteRefusal(target, resolution.reason, resolution.logDetail);
      return { status: 403, header: REFUSED_HEADER, code: resolution.reason, message: resolution.detail };
    }
    try {
      const socket = await connectToAny(resolution.addresses, target.port, connectTimeoutMs);
      server.track(socket);
      return socket;
    } catch (error) {
      const timedOut = error instanceof ConnectFailure && error.timedOut;
      const detail = `could not connect to ${target.host} port ${target.port}: ${(error as Error).message}`;
      log.info("connect_failed", "egress connect failed", { host: target.host, port: target.port, detail });
      // The failure's own message names the address tried: the client hears only why.
      const why = timedOut ? `no connection within ${connectTimeoutMs} ms` : (((error as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? "the connection failed");
      const message = net.isIP(target.host) !== 0 ? detail : `could not connect to ${target.host} port ${target.port}: ${why}`;
      return { status: timedOut ? 504 : 502, header: ERROR_HEADER, code: timedOut ? "connect_timeout" : "connect_failed", message };
    }
  }

  function noteRefusal(target: Target, reason: RefusalReason, logDetail: string): void {
    options.onRefusal?.(target.host, target.port, reason);
    log.warn("refused", "egress refused", { host: target.host, port: target.port, reason, detail: logDetail });
  }

  server.on("connect", (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    server.track(client);
    client.on("error", () => client.destroy());
    handleConnect(req.url ?? "", client, head).catch((error: unknown) => {
      options.log.error("egress CONNECT failed unexpectedly", { error });
      client.destroy();
    });
  });

  /** Refuses a port that is not the operator's (before any lookup); null when it may be connected to. */
  function refusePort(target: Target): Failure | null {
    if (isPortAllowed(allowedPorts, options.internal ?? [], target.host, target.port)) return null;
    const detail = `port ${target.port} of ${target.host} is not one the egress proxy connects to (allowed: ${allowedPorts.join(", ")})`;
    noteRefusal(target, "port_not_allowed", detail);
    return { status: 403, header: REFUSED_HEADER, code: "port_not_allowed", message: detail };
  }

  /**
   * Admits, then opens an upstream connection for a tunnel or a forwarded request. The slot is
   * held until that connection closes; one connected across a closeUpstreams() is dropped.
   */
  async function openUpstream(kind: UpstreamKind, target: Target, signal?: AbortSignal): Promise<Duplex | Failure> {
    const refused = refusePort(target);
    if (refused !== null) return refused;
    const slot = admitUpstream(kind);
    if (!slot.ok) return { status: slot.status, header: ERROR_HEADER, code: slot.reason, message: slot.message };
    const generation = server.generation;
    let upstream: Duplex | Failure;
    try {
      upstream = await open(target, signal);
    } catch (error) {
      slot.release();
      throw error;
    }
    if (!("pipe" in upstream)) {
      slot.release();
      return upstream;
    }
    upstream.once("close", slot.release);
    if (server.generation !== generation) {
      upstream.destroy();
      return { status: 503, header: ERROR_HEADER, code: "egress_changed", message: `the workspace's egress changed while ${target.host} port ${target.port} was being connected to; try again` };
    }
    return upstream;
  }

  /**
   * Cuts an upstream connection, with `ends`, when it idles or outlives its maximum, or when
   * closeUpstreams() is called; counted. Released when the upstream closes.
   */
  function superviseUpstream(kind: UpstreamKind, upstream: Duplex, watched: readonly Duplex[], ends: ReadonlyArray<{ destroy(): void }>): void {
    const cut = (reason: CutReason): void => {
      watch.stop();
      unhold();
      log.debug("cut", "egress upstream cut", { kind, reason });
      for (const end of ends) end.destroy();
      options.onCut?.(kind, reason);
    };
    const watch = watchUpstream(watched, timeouts, cut);
    const unhold = server.holdUpstream(cut);
    upstream.once("close", () => {
      watch.stop();
      unhold();
    });
  }

  async function handleConnect(authority: string, client: Duplex, head: Buffer): Promise<void> {
    const target = parseConnectTarget(authority);
    if (typeof target === "string") return answerRaw(client, { status: 400, header: ERROR_HEADER, code: "bad_request", message: target });
    const upstream = await openUpstream("tunnel", target, closedSignal(client, true));
    if (!("pipe" in upstream)) return answerRaw(client, upstream);
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    establishTunnel(client, upstream, head);
  }

  /**
   * The tunnel proper, once the destination is decided and connected: 200, then the bytes both
   * ways, as they are, until either side closes, the tunnel idles or outlives its maximum, or
   * closeUpstreams() cuts it. A tunnel that should be looked into (TLS terminated for a host)
   * would be set up here, between the 200 and the pipes.
   */
  function establishTunnel(client: Duplex, upstream: Duplex, head: Buffer): void {
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", closeBoth);
    upstream.on("error", closeBoth).on("close", closeBoth);
    superviseUpstream("tunnel", upstream, [client, upstream], [client, upstream]);
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) upstream.write(head);
    // pipe() passes on a half-close (end) each way; a socket ended both ways closes itself.
    upstream.pipe(client);
    client.pipe(upstream);
  }

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    handleRequest(req, res).catch((error: unknown) => {
      options.log.error("egress request failed unexpectedly", { error });
      res.destroy();
    });
  });

  async function handleRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const parsed = parseAbsoluteTarget(req.url ?? "");
    if (typeof parsed === "string") return answer(req, res, { status: 400, header: ERROR_HEADER, code: "bad_request", message: parsed });
    const upstream = await openUpstream("request", parsed.target, closedSignal(res));
    if (!("pipe" in upstream)) return answer(req, res, upstream);
    if (res.destroyed) {
      upstream.destroy();
      return;
    }
    superviseUpstream("request", upstream, [upstream], [upstream, res]);
    const headers = { ...withoutHopByHop(req.headers), host: parsed.authority };
    // No agent and our own, already connected socket: the request goes to the address we checked.
    const forward = http.request({ method: req.method, path: parsed.path, headers, createConnection: () => upstream as never });
    forward.on("response", (response) => {
      res.writeHead(response.statusCode ?? 502, response.statusMessage, withoutHopByHop(response.headers));
      pipeline(response, res, () => upstream.destroy());
    });
    forward.on("error", (error) => {
      upstream.destroy();
      if (res.headersSent) res.destroy();
      else answer(req, res, { status: 502, header: ERROR_HEADER, code: "upstream_failed", message: `${parsed.target.host} port ${parsed.target.port}: ${error.message}` });
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    pipeline(req, forward, (error) => {
      if (error) upstream.destroy();
    });
  }

  return server;
}

/**
 * Aborts when `stream` closes (or ends, for a tunnel's client: over a Unix socket a client that
 * leaves only ends, and nothing else is read from it before its tunnel is up): a lookup for a
 * client that went away is cancelled, freeing its slot.
 */
function closedSignal(stream: Duplex | http.ServerResponse, alsoOnEnd = false): AbortSignal {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  if (stream.destroyed) abort();
  stream.once("close", abort);
  if (alsoOnEnd) stream.once("end", abort);
  return controller.signal;
}

function body(failure: Failure): string {
  const what = failure.header === REFUSED_HEADER ? `refused (${failure.code})` : failure.code;
  return `alive egress proxy: ${what}: ${failure.message}\n`;
}

function answer(req: http.IncomingMessage, res: http.ServerResponse, failure: Failure): void {
  const text = body(failure);
  res.writeHead(failure.status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(text), [failure.header]: failure.code });
  res.end(text);
  // An unread request body is drained by the server; nothing of it goes anywhere.
  req.resume();
}

function answerRaw(client: Duplex, failure: Failure): void {
  if (client.destroyed) return;
  const text = body(failure);
  const reason = http.STATUS_CODES[failure.status] ?? "Error";
  const head = `HTTP/1.1 ${failure.status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\n`;
  // Closed once written: the client gets no tunnel, and a half-open socket would keep close() waiting.
  client.end(`${head}${failure.header}: ${failure.code}\r\nconnection: close\r\n\r\n${text}`, () => client.destroy());
}

function withoutHopByHop(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const named = String(headers.connection ?? "")
    .split(",")
    .map((token) => token.trim().toLowerCase());
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name) && !named.includes(name)) out[name] = value;
  }
  return out;
}
