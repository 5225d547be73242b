/**
 * A workspace's HTTP forward proxy: one per workspace, listening on that workspace's Unix socket
 * (the container's only way out, through a forwarder on its loopback). It tunnels CONNECT host:port
 * and forwards absolute-form http:// requests, each under the workspace's egress policy (see
 * destination.ts for the order of checks). Refusals are 403 with `x-alive-egress-refused: <reason>`.
 * Request paths, queries and headers are never logged: they may hold credentials.
 */
import http from "node:http";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream";
import type { Logger } from "../log.js";
import { hostAddressesFromInterfaces } from "./addresses.js";
import {
  ConnectFailure,
  connectToAny,
  lookupAddresses,
  parseAbsoluteTarget,
  parseConnectTarget,
  resolveDestination,
  type RefusalReason,
  type Resolver,
  type Target,
} from "./destination.js";
import type { InternalDestination } from "./internal.js";
import type { EgressPolicy } from "./policy.js";

export const REFUSED_HEADER = "x-alive-egress-refused";
export const ERROR_HEADER = "x-alive-egress-error";

export interface EgressProxyOptions {
  /** Read for every request: the workspace's policy can change while the proxy runs. */
  policy: () => EgressPolicy;
  internal?: readonly InternalDestination[];
  /** Default: getaddrinfo for all addresses, bounded by dnsTimeoutMs. */
  resolve?: Resolver;
  dnsTimeoutMs?: number;
  /** The host's own addresses. Default: os.networkInterfaces(), read for every request. */
  hostAddresses?: () => readonly string[];
  /** Per attempted address. Default 10 s. */
  connectTimeoutMs?: number;
  /** Called for every refusal (for counting); the log line comes once per host and reason. */
  onRefusal?: (host: string, port: number, reason: RefusalReason) => void;
  log: Logger;
}

export type EgressErrorCode = "bad_request" | "dns_failed" | "connect_failed" | "connect_timeout" | "upstream_failed";

interface Failure {
  status: number;
  header: typeof REFUSED_HEADER | typeof ERROR_HEADER;
  code: RefusalReason | EgressErrorCode;
  message: string;
}

/** How many (host, reason) pairs are remembered as already logged. */
const LOGGED_REFUSALS_LIMIT = 1024;
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
  const resolve = options.resolve ?? lookupAddresses(options.dnsTimeoutMs ?? 5_000);
  const hostAddresses = options.hostAddresses ?? hostAddressesFromInterfaces;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const logged = new Set<string>();
  const server = new EgressProxyServer();

  /** Resolves, checks and connects; a Failure says what to answer instead. */
  async function open(target: Target): Promise<Duplex | Failure> {
    const rules = { policy: options.policy(), internal: options.internal ?? [], resolve, hostAddresses: hostAddresses() };
    const resolution = await resolveDestination(target, rules);
    if (!resolution.ok) {
      if (resolution.reason === "dns_failed") {
        options.log.info("egress lookup failed", { host: target.host, port: target.port, detail: resolution.detail });
        return { status: 502, header: ERROR_HEADER, code: "dns_failed", message: resolution.detail };
      }
      noteRefusal(target, resolution.reason, resolution.detail);
      return { status: 403, header: REFUSED_HEADER, code: resolution.reason, message: resolution.detail };
    }
    try {
      const socket = await connectToAny(resolution.addresses, target.port, connectTimeoutMs);
      server.track(socket);
      return socket;
    } catch (error) {
      const timedOut = error instanceof ConnectFailure && error.timedOut;
      const message = `could not connect to ${target.host} port ${target.port}: ${(error as Error).message}`;
      options.log.info("egress connect failed", { host: target.host, port: target.port, detail: message });
      return { status: timedOut ? 504 : 502, header: ERROR_HEADER, code: timedOut ? "connect_timeout" : "connect_failed", message };
    }
  }

  function noteRefusal(target: Target, reason: RefusalReason, detail: string): void {
    options.onRefusal?.(target.host, target.port, reason);
    const key = `${reason} ${target.host}`;
    if (logged.has(key)) return;
    if (logged.size >= LOGGED_REFUSALS_LIMIT) logged.delete(logged.values().next().value as string);
    logged.add(key);
    options.log.warn("egress refused", { host: target.host, port: target.port, reason, detail });
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
    const upstream = await open(target);
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
    const upstream = await open(parsed.target);
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
