/**
 * The broker section's other process (bench/brokering.ts forks it): the HTTPS upstream and the
 * timing client, as a workspace's tools and the upstream are processes apart from the sidecar in
 * production. So the egress proxy and its broker, in the bench's process, do not share an event
 * loop (or a core) with the traffic they carry. Driven over IPC; every timing is taken here.
 */
import { once } from "node:events";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import tls from "node:tls";

export type Arm = "plain" | "brokered";
export type Arms<T> = Record<Arm, T>;

/** Sent first by bench/brokering.ts: what to serve and whom to trust. */
export interface PeerInit {
  init: {
    /** The egress proxy's Unix socket. */
    socketPath: string;
    hosts: Arms<string>;
    /** The header (and value) every brokered request must carry and no plain one may. */
    header: string;
    value: string;
    /** The upstream's certificate per name (chosen by SNI). */
    leaves: Arms<{ keyPem: string; certPem: string }>;
    /** The CA each arm's client trusts: the test CA (plain) or the broker's (brokered). */
    trust: Arms<string>;
  };
}

/** Sent once, when the upstream listens. */
export interface PeerReady {
  ready: { port: number; smallBytes: number };
}

/**
 * What bench/brokering.ts asks. get: a GET over the connection in `slot` (a tunnel opened first if
 * the slot has none); close: end the slot's connection; answered: the upstream's counts.
 */
export type PeerRequest =
  | { id: number; op: "get"; arm: Arm; slot: string; path: string }
  | { id: number; op: "close"; slot: string }
  | { id: number; op: "answered" };

export type PeerReply =
  | { id: number; ok: true; ms: number; bytes: number; connections: number; answered: Arms<number> }
  | { id: number; ok: false; error: string };

type Config = PeerInit["init"];

const SMALL_BODY = "ok\n";
/** A request (its tunnel included) that takes longer is a bug, not a sample: the section fails instead of hanging. */
const REQUEST_DEADLINE_MS = 30_000;
/** 64 KiB of a fixed pattern: the download is made of it, written with backpressure. */
const PATTERN = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 31 + 7) & 0xff));

/**
 * The HTTPS upstream on 127.0.0.1, a certificate per name (SNI). GET /small: SMALL_BODY; GET
 * /download?bytes=N: N bytes of PATTERN, streamed. A brokered request without the bound header, or
 * a plain one with it, is answered 401.
 */
async function startUpstream(config: Config, answered: Arms<number>): Promise<https.Server> {
  const brokeredContext = tls.createSecureContext({
    key: config.leaves.brokered.keyPem,
    cert: config.leaves.brokered.certPem,
  });
  const server = https.createServer(
    {
      key: config.leaves.plain.keyPem,
      cert: config.leaves.plain.certPem,
      SNICallback: (name, callback) => callback(null, name === config.hosts.brokered ? brokeredContext : undefined),
    },
    (req, res) => {
      const arm: Arm = (req.socket as tls.TLSSocket).servername === config.hosts.brokered ? "brokered" : "plain";
      const header = req.headers[config.header];
      if (arm === "brokered" ? header !== config.value : header !== undefined) {
        res.writeHead(401).end();
        return;
      }
      answered[arm] += 1;
      const url = new URL(req.url ?? "/", "https://upstream");
      if (url.pathname === "/small") {
        res.writeHead(200, { "content-type": "text/plain", "content-length": SMALL_BODY.length }).end(SMALL_BODY);
      } else if (url.pathname === "/download") {
        const total = Number(url.searchParams.get("bytes"));
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": total });
        let sent = 0;
        const more = (): void => {
          while (sent < total) {
            const chunk = PATTERN.subarray(0, Math.min(PATTERN.length, total - sent));
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once("drain", more);
          }
          res.end();
        };
        more();
      } else {
        res.writeHead(404).end();
      }
    },
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return server;
}

/** What a client needs to reach the upstream through the proxy. */
interface Route {
  config: Config;
  port: number;
  trust: Arms<tls.SecureContext>;
}

/**
 * A keep-alive agent whose one connection is a tunnel through the egress proxy with TLS over it:
 * CONNECT, the 200, then the handshake trusting the arm's CA. close() ends every connection it made.
 */
class TunnelAgent extends http.Agent {
  private readonly opened = new Set<Duplex>();

  constructor(
    private readonly route: Route,
    readonly arm: Arm,
  ) {
    super({ keepAlive: true, maxSockets: 1 });
  }

  override createConnection(
    _options: http.ClientRequestArgs,
    callback?: (error: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    openTunnel(this.route, this.arm).then(
      (socket) => {
        this.opened.add(socket);
        callback?.(null, socket);
      },
      (error: Error) => callback?.(error, undefined as never),
    );
    return undefined;
  }

  /** Connections it opened. */
  get connections(): number {
    return this.opened.size;
  }

  close(): void {
    this.destroy();
    for (const socket of this.opened) socket.destroy();
  }
}

async function openTunnel(route: Route, arm: Arm): Promise<tls.TLSSocket> {
  const host = route.config.hosts[arm];
  const socket = net.connect({ path: route.config.socketPath });
  try {
    await once(socket, "connect");
    socket.write(`CONNECT ${host}:${route.port} HTTP/1.1\r\nHost: ${host}:${route.port}\r\n\r\n`);
    await readConnectReply(socket, host);
    const secure = tls.connect({ socket, servername: host, secureContext: route.trust[arm] });
    secure.on("error", () => secure.destroy());
    await once(secure, "secureConnect");
    return secure;
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

/** Reads the proxy's answer to a CONNECT; rejects unless it is a 200 with nothing after it. */
function readConnectReply(socket: net.Socket, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const done = (error?: Error): void => {
      socket.off("data", onData).off("error", done).off("end", onEnd);
      socket.pause();
      if (error) reject(error);
      else resolve();
    };
    const onEnd = (): void => done(new Error(`CONNECT ${host}: the proxy closed the connection`));
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end === -1) return;
      const status = buffered.subarray(0, end).toString("latin1").split("\r\n")[0] ?? "";
      if (!status.startsWith("HTTP/1.1 200 ")) return done(new Error(`CONNECT ${host} refused: ${status}`));
      // The server speaks only after the client's hello: anything here would be lost to the TLS socket.
      if (buffered.length > end + 4) return done(new Error(`CONNECT ${host}: bytes after the 200`));
      done();
    };
    socket.on("data", onData).once("error", done).once("end", onEnd);
  });
}

/** A GET over the agent's connection (opened first if it has none), read to the end; rejects unless 200, or after REQUEST_DEADLINE_MS. */
function get(agent: TunnelAgent, route: Route, urlPath: string): Promise<{ bytes: number; ms: number }> {
  const arm = agent.arm;
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const fail = (error: Error): void => {
      clearTimeout(deadline);
      reject(error);
    };
    const req = http.request({ host: route.config.hosts[arm], port: route.port, path: urlPath, agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        fail(new Error(`${arm}: HTTP ${String(res.statusCode)} for ${urlPath}`));
        return;
      }
      let bytes = 0;
      res.on("data", (chunk: Buffer) => (bytes += chunk.length));
      res.on("end", () => {
        clearTimeout(deadline);
        resolve({ bytes, ms: performance.now() - start });
      });
      res.on("error", fail);
    });
    const deadline = setTimeout(
      () => req.destroy(new Error(`${arm}: no whole answer for ${urlPath} within ${REQUEST_DEADLINE_MS} ms`)),
      REQUEST_DEADLINE_MS,
    );
    req.on("error", fail);
    req.end();
  });
}

async function main(): Promise<void> {
  const send = (message: PeerReply | PeerReady): void => {
    process.send?.(message);
  };
  const [first] = (await once(process, "message")) as [PeerInit];
  const config = first.init;
  const answered: Arms<number> = { plain: 0, brokered: 0 };
  const server = await startUpstream(config, answered);
  const route: Route = {
    config,
    port: (server.address() as net.AddressInfo).port,
    // One context per arm, made once: a client's trust store is not what is measured.
    trust: {
      plain: tls.createSecureContext({ ca: config.trust.plain }),
      brokered: tls.createSecureContext({ ca: config.trust.brokered }),
    },
  };
  const agents = new Map<string, TunnelAgent>();
  const handle = async (request: PeerRequest): Promise<PeerReply> => {
    const reply = { id: request.id, ok: true as const, ms: 0, bytes: 0, connections: 0, answered };
    switch (request.op) {
      case "get": {
        let agent = agents.get(request.slot);
        if (!agent) agents.set(request.slot, (agent = new TunnelAgent(route, request.arm)));
        if (agent.arm !== request.arm) throw new Error(`slot ${request.slot} is ${agent.arm}, not ${request.arm}`);
        const result = await get(agent, route, request.path);
        return { ...reply, ...result, connections: agent.connections };
      }
      case "close":
        agents.get(request.slot)?.close();
        agents.delete(request.slot);
        return reply;
      case "answered":
        return reply;
    }
  };
  process.on("message", (request: PeerRequest) => {
    handle(request).then(send, (error: unknown) =>
      send({ id: request.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
  });
  process.once("disconnect", () => {
    for (const agent of agents.values()) agent.close();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
  send({ ready: { port: route.port, smallBytes: SMALL_BODY.length } });
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
