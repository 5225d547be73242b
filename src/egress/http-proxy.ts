/**
 * A workspace's HTTP forward proxy: one per workspace, listening on that workspace's Unix socket
 * (the container's only way out, through a forwarder on its loopback). It tunnels CONNECT host:port
 * and forwards absolute-form http:// requests, each under the workspace's egress policy (see
 * destination.ts for the order of checks). Refusals are 403 with `x-alive-egress-refused: <reason>`.
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
import { hostAddressesFromInterfaces, type AddressSet } from "./addresses.js";
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
import type { InternalDestination } from "./internal.js";
import type { EgressPolicy } from "./policy.js";
import { NameResolver } from "./resolver.js";

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
  log: Logger;
  /** Rate-limits the log lines a client causes (refused, lookup failed, connect failed), under `logKey`. Default: one of its own. */
  logLimiter?: LogLimiter;
  /** The key of this proxy's lines in logLimiter (the workspace). Default "". */
  logKey?: string;
}

/** dns_busy: the workspace already has its most lookups in flight and waiting (429). */
export type EgressErrorCode = "bad_request" | "dns_failed" | "dns_busy" | "connect_failed" | "connect_timeout" | "upstream_failed";

interface Failure {
  status: number;
  header: typeof REFUSED_HEADER | typeof ERROR_HEADER;
  code: RefusalReason | EgressErrorCode;
  message: string;
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"]);

/** An http.Server whose closeAllConnections() also ends the tunnels and upstream sockets it opened. */
export class EgressProxyServer extends http.Server {
  readonly #open = new Set<Duplex>();

  track(socket: Duplex): void {
    this.#open.add(socket);
    socket.once("close", () => this.#open.delete(socket));
  }

  override closeAllConnections(): void {
    super.closeAllConnections();
    for (const socket of this.#open) socket.destroy();
  }
}

export function createEgressProxy(options: EgressProxyOptions): EgressProxyServer {
  const resolve = options.resolve ?? new NameResolver({ timeoutMs: options.dnsTimeoutMs ?? 5_000 }).forWorkspace("");
  const hostAddresses = options.hostAddresses ?? hostAddressesFromInterfaces;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const log = limitedLog(options.log, options.logLimiter ?? new LogLimiter(), options.logKey ?? "");
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

  async function handleConnect(authority: string, client: Duplex, head: Buffer): Promise<void> {
    const target = parseConnectTarget(authority);
    if (typeof target === "string") return answerRaw(client, { status: 400, header: ERROR_HEADER, code: "bad_request", message: target });
    const upstream = await open(target, closedSignal(client, true));
    if (!("pipe" in upstream)) return answerRaw(client, upstream);
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", closeBoth);
    upstream.on("error", closeBoth).on("close", closeBoth);
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
    const upstream = await open(parsed.target, closedSignal(res));
    if (!("pipe" in upstream)) return answer(req, res, upstream);
    if (res.destroyed) {
      upstream.destroy();
      return;
    }
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
