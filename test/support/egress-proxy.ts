/**
 * An egress proxy on a Unix socket in a tmp dir, with loopback upstreams (an HTTP server and a TCP
 * echo server) declared as internal destinations, a resolver that records every name it is asked
 * for, and captured log lines. Nothing here sends traffic anywhere but loopback.
 */
import { once } from "node:events";
import { promises as fs } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseInternalDestinations } from "../../src/policy/internal-destinations.js";
import { createEgressProxy, type EgressProxyOptions, type EgressProxyServer } from "../../src/egress/http-proxy.js";
import type { EgressPolicy } from "../../src/policy/egress-policy.js";
import { createLogger } from "../../src/log.js";
import { waitFor } from "./wait.js";

export interface Upstreams {
  httpPort: number;
  echoPort: number;
  /** Requests the HTTP upstream saw: method, url and headers. */
  requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>;
  /** Connections the echo server and the HTTP server have accepted. */
  connections(): number;
  /** Resolves a pending GET /held: the upstream then writes its second chunk and ends. */
  release(): void;
  close(): Promise<void>;
}

/** GET /held: "first\n", then "second\n" once released; POST /echo: the body back as it arrives. */
export async function startUpstreams(): Promise<Upstreams> {
  const requests: Upstreams["requests"] = [];
  const held: http.ServerResponse[] = [];
  const web = http.createServer((req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    if (req.url === "/held") {
      res.writeHead(200, { "content-type": "text/plain", "x-upstream": "yes" });
      res.write("first\n");
      held.push(res);
    } else if (req.url === "/echo") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      req.pipe(res);
    } else {
      res.writeHead(404, { "keep-alive": "timeout=77", "x-hop": "1", connection: "close, x-hop" }).end("not here\n");
    }
  });
  const echo = net.createServer((socket) => socket.pipe(socket));
  let connections = 0;
  for (const server of [web, echo]) server.on("connection", () => connections++);
  web.listen(0, "127.0.0.1");
  echo.listen(0, "127.0.0.1");
  await Promise.all([once(web, "listening"), once(echo, "listening")]);
  return {
    httpPort: (web.address() as net.AddressInfo).port,
    echoPort: (echo.address() as net.AddressInfo).port,
    requests,
    connections: () => connections,
    release: () => held.shift()?.end("second\n"),
    close: async () => {
      web.closeAllConnections();
      await Promise.all([new Promise((resolve) => web.close(resolve)), new Promise((resolve) => echo.close(resolve))]);
    },
  };
}

export interface TestProxy {
  server: EgressProxyServer;
  socketPath: string;
  /** Names the resolver was asked for, in order. */
  lookups: string[];
  refusals: Array<[string, number, string]>;
  logLines: string[];
  policy: EgressPolicy;
  close(): Promise<void>;
}

export interface TestProxyOptions {
  policy: EgressPolicy;
  upstreams: Upstreams;
  /** Name → addresses the injected resolver returns; other names fail with ENOTFOUND. */
  names?: Record<string, string[]>;
  /** Use the real resolver (only for names /etc/hosts answers, such as localhost). */
  realResolver?: boolean;
  extra?: Partial<EgressProxyOptions>;
}

export async function startTestProxy(options: TestProxyOptions): Promise<TestProxy> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "egress-proxy-"));
  const socketPath = path.join(dir, "proxy.sock");
  const lookups: string[] = [];
  const refusals: TestProxy["refusals"] = [];
  const logLines: string[] = [];
  const { httpPort, echoPort } = options.upstreams;
  const internal = parseInternalDestinations(
    [`127.0.0.1:${httpPort}`, `127.0.0.1:${echoPort}`, `http://upstream.internal:${httpPort}`],
    "test",
  );
  const names: Record<string, string[]> = { "upstream.internal": ["127.0.0.1"], ...options.names };
  const state: TestProxy = {
    server: undefined as unknown as EgressProxyServer,
    socketPath,
    lookups,
    refusals,
    logLines,
    policy: options.policy,
    close: async () => {
      state.server.closeAllConnections();
      await new Promise((resolve) => state.server.close(resolve));
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  const resolve = async (host: string): Promise<string[]> => {
    lookups.push(host);
    const found = names[host];
    if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return found;
  };
  state.server = createEgressProxy({
    policy: () => state.policy,
    internal,
    ...(options.realResolver ? {} : { resolve }),
    hostAddresses: () => ["127.0.0.1", "::1"],
    connectTimeoutMs: 2_000,
    // The upstreams' ports and 8080 besides 443 and 80, so the address checks are met on them too;
    // the port refusals have tests of their own, which pass allowedPorts.
    allowedPorts: [443, 80, 8080, httpPort, echoPort],
    onRefusal: (host, port, reason) => refusals.push([host, port, reason]),
    log: createLogger({ level: "debug", write: (line) => logLines.push(line) }),
    ...options.extra,
  });
  state.server.listen(socketPath);
  await once(state.server, "listening");
  return state;
}

/** Everything a socket has received so far, kept by one listener from the start (nothing is missed). */
export class Received {
  data = Buffer.alloc(0);
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.closed = true;
    });
  }

  get text(): string {
    return this.data.toString();
  }

  /** Waits until the received text includes `expected`; fails if the socket closes first. */
  async includes(expected: string): Promise<string> {
    await waitFor(
      () => {
        if (this.text.includes(expected)) return true;
        if (this.closed) throw new Error(`closed before ${JSON.stringify(expected)}; got ${JSON.stringify(this.text)}`);
        return false;
      },
      { what: JSON.stringify(expected), intervalMs: 5 },
    );
    return this.text;
  }

  /** Waits until the socket has closed; returns all it received. */
  async closedText(): Promise<string> {
    await waitFor(() => this.closed, { what: "the socket to close", intervalMs: 5 });
    return this.text;
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  /** Received bytes, the head included. */
  received: Received;
  /** The text after the head received so far. */
  body(): string;
  socket: net.Socket;
}

/** Sends raw bytes to the proxy and reads one response head (status line and headers). */
export async function sendRaw(socketPath: string, request: string): Promise<RawResponse> {
  const socket = net.connect(socketPath);
  const received = new Received(socket);
  await once(socket, "connect");
  socket.write(request);
  const text = await received.includes("\r\n\r\n");
  const headEnd = text.indexOf("\r\n\r\n");
  const [statusLine = "", ...lines] = text.slice(0, headEnd).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    received,
    body: () => received.text.slice(headEnd + 4),
    socket,
  };
}

/** CONNECT target through the proxy. */
export function connectThrough(socketPath: string, target: string): Promise<RawResponse> {
  return sendRaw(socketPath, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
}
