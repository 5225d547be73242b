/**
 * A brokered tunnel end to end, on loopback only: an HTTPS upstream with a certificate from a test
 * CA, a front (net.Server) whose every connection is handed to interceptTunnel with a socket freshly
 * connected to that upstream, as the egress proxy does after its CONNECT; and clients that trust the
 * broker's CA.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { promises as fsp } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { after, afterEach, before, describe, test } from "node:test";
import tls from "node:tls";
import { BrokerCa } from "../../src/egress/broker/broker-ca.js";
import type { HeaderBinding } from "../../src/egress/broker/forward-headers.js";
import { interceptTunnel, type Interception } from "../../src/egress/broker/intercept.js";
import { LeafMinter } from "../../src/egress/broker/leaf-minter.js";
import { createUpstreamTrust, type UpstreamTrust } from "../../src/egress/broker/trust.js";
import { waitFor, withTimeout } from "../support/wait.js";

const SECRET = "Bearer sk-broker-test-0123456789abcdef";
const PLACEHOLDER = "alive-secret-placeholder-feedface";
const BINDING: HeaderBinding = { header: "Authorization", value: SECRET, placeholder: PLACEHOLDER };
const HOST = "api.upstream.test";
const MB = 1024 * 1024;

let root: string;
let brokerCa: BrokerCa;
/** The CA of the upstreams: in the broker's upstream trust, never in a client's. */
let upstreamCa: BrokerCa;
/** A CA nobody trusts. */
let strangerCa: BrokerCa;
let minter: LeafMinter;
let trust: UpstreamTrust;
const closers: Array<() => Promise<void> | void> = [];

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), "broker-intercept-"));
  const open = (name: string): Promise<BrokerCa> => BrokerCa.open(path.join(root, name));
  [brokerCa, upstreamCa, strangerCa] = await Promise.all([open("broker"), open("upstream-ca"), open("stranger-ca")]);
  minter = new LeafMinter(brokerCa);
  trust = createUpstreamTrust(upstreamCa.certPem);
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
after(() => fsp.rm(root, { recursive: true, force: true }));

/** 64 KiB of a fixed pattern: downloads are made of it. */
const PATTERN = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 31 + 7) & 0xff));

interface Upstream {
  port: number;
  /** Connections accepted (TCP), and those still open. */
  connections(): number;
  open(): number;
  requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>;
}

/**
 * An HTTPS upstream on 127.0.0.1. GET /headers: the request's headers as JSON; POST /upload: the
 * body's size and sha256; GET /download?bytes=N: N bytes of PATTERN; GET /close: answers with
 * connection: close; GET /reset: destroys the connection unanswered; GET /cut: a head and part of
 * a body, then destroys it.
 */
async function startUpstream(ca: BrokerCa, name: string): Promise<Upstream> {
  const leaf = await ca.issueLeaf(name);
  const requests: Upstream["requests"] = [];
  const server = https.createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    const url = new URL(req.url ?? "/", "https://upstream");
    if (url.pathname === "/headers") {
      res.writeHead(200, { "content-type": "application/json", "keep-alive": "timeout=30", "x-hop": "1" });
      res.end(JSON.stringify(req.headers));
    } else if (url.pathname === "/upload") {
      const hash = createHash("sha256");
      let size = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        hash.update(chunk);
      });
      req.on("end", () => res.end(JSON.stringify({ size, sha256: hash.digest("hex") })));
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
    } else if (url.pathname === "/close") {
      res.writeHead(200, { connection: "close" }).end("bye\n");
    } else if (url.pathname === "/reset") {
      req.socket.destroy();
    } else if (url.pathname === "/cut") {
      res.writeHead(200, { "content-length": 1000 });
      res.write("x".repeat(100), () => req.socket.destroy());
    } else {
      res.writeHead(404).end();
    }
  });
  let connections = 0;
  let open = 0;
  server.on("connection", (socket: net.Socket) => {
    connections++;
    open++;
    socket.once("close", () => open--);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    open: () => open,
    requests,
  };
}

interface Front {
  port: number;
  /** Client connections accepted, and those still open. */
  connections: number;
  open: number;
  onRequests: number;
  interceptions: Interception[];
  warnings: Array<{ msg: string; fields: Record<string, unknown> | undefined }>;
}

/**
 * What the egress proxy does after a CONNECT to `host`: connect to the upstream's port on 127.0.0.1,
 * then hand both sockets to interceptTunnel. With `takeHead`, the client's first bytes (its
 * ClientHello) are read first and passed as `head`, as a CONNECT's trailing bytes are.
 */
async function startFront(upstream: Upstream, host: string, options: { takeHead?: boolean } = {}): Promise<Front> {
  const front: Front = { port: 0, connections: 0, open: 0, onRequests: 0, interceptions: [], warnings: [] };
  const interceptions = front.interceptions;
  const server = net.createServer((client) => {
    front.connections++;
    front.open++;
    client.once("close", () => front.open--);
    client.pause();
    const start = async (head: Buffer): Promise<void> => {
      const upstreamSocket = net.connect(upstream.port, "127.0.0.1");
      upstreamSocket.on("error", () => undefined);
      await once(upstreamSocket, "connect");
      interceptions.push(
        interceptTunnel({
          client,
          upstream: upstreamSocket,
          head,
          target: { host, port: upstream.port },
          leaf: await minter.mint(host),
          upstreamTrust: trust,
          binding: BINDING,
          onRequest: () => front.onRequests++,
          log: { warn: (msg, fields) => front.warnings.push({ msg, fields }) },
        }),
      );
    };
    client.on("error", () => undefined);
    if (options.takeHead) client.once("readable", () => void start(client.read() as Buffer));
    else void start(Buffer.alloc(0));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  front.port = (server.address() as net.AddressInfo).port;
  closers.push(() => {
    for (const interception of interceptions) interception.close();
    server.close();
  });
  return front;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request to `host` through the front, as a client that trusts the broker's CA sends it. */
async function request(
  front: Front,
  host: string,
  options: https.RequestOptions & { body?: Buffer | string } = {},
): Promise<Answer> {
  const { body, ...rest } = options;
  const req = https.request({
    host: "127.0.0.1",
    port: front.port,
    servername: net.isIP(host) ? "" : host,
    ca: brokerCa.certPem,
    agent: false,
    ...rest,
    headers: { host, ...rest.headers },
  });
  req.end(body);
  const [res] = (await once(req, "response")) as [http.IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
}

describe("broker: the binding", () => {
  test("sets the header (replacing the client's), swaps the placeholder, drops hop-by-hop headers", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST, { takeHead: true });
    const answer = await request(front, HOST, {
      path: "/headers?token=abc",
      headers: {
        authorization: "Bearer the-client-own",
        "x-api-key": `key=${PLACEHOLDER}; again=${PLACEHOLDER}`,
        cookie: [`a=${PLACEHOLDER}`, "b=2"],
        connection: "keep-alive, x-private",
        "x-private": "hop",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
      },
    });
    assert.equal(answer.status, 200);
    const seen = JSON.parse(answer.body.toString()) as Record<string, string>;
    assert.equal(seen.authorization, SECRET);
    assert.equal(seen["x-api-key"], `key=${SECRET}; again=${SECRET}`);
    assert.equal(seen.cookie, `a=${SECRET}; b=2`);
    assert.equal(seen.host, HOST);
    assert.equal(seen["x-private"], undefined);
    assert.equal(seen["proxy-authorization"], undefined);
    assert.equal(upstream.requests[0]?.url, "/headers?token=abc");
    assert.equal(answer.headers["x-hop"], "1", "an end-to-end response header is passed on");
    assert.equal(answer.headers["keep-alive"], undefined, "a hop-by-hop response header is not");
    assert.equal(front.onRequests, 1);
    assert.deepEqual(front.warnings, []);
  });

  test("the client is offered HTTP/1.1 only: one asking for h2 gets http/1.1", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const socket = tls.connect({
      host: "127.0.0.1",
      port: front.port,
      servername: HOST,
      ca: brokerCa.certPem,
      ALPNProtocols: ["h2", "http/1.1"],
    });
    await once(socket, "secureConnect");
    assert.equal(socket.alpnProtocol, "http/1.1");
    socket.destroy();
  });

  test("keep-alive: requests over one client connection use one upstream connection", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: brokerCa.certPem });
    closers.push(() => agent.destroy());
    const warnings: Error[] = [];
    const onWarning = (warning: Error): number => warnings.push(warning);
    process.on("warning", onWarning);
    closers.push(() => void process.off("warning", onWarning));
    // More than a socket's default listener bound (10): a listener left behind per request would warn.
    for (let i = 0; i < 12; i++) {
      const upload = i % 2 === 1;
      const answer = await request(front, HOST, {
        agent,
        path: upload ? "/upload" : "/headers",
        method: upload ? "POST" : "GET",
        body: upload ? "small body" : undefined,
      });
      assert.equal(answer.status, 200);
    }
    assert.equal(front.connections, 1, "the client kept one connection");
    assert.equal(upstream.connections(), 1);
    assert.equal(front.onRequests, 12);
    assert.deepEqual(warnings, []);
  });

  test("a pipelining client gets its answers in order, over the one upstream connection", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const socket = tls.connect({ host: "127.0.0.1", port: front.port, servername: HOST, ca: brokerCa.certPem });
    await once(socket, "secureConnect");
    const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
    socket.write(get("/download?bytes=200000") + get("/close"));
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    await once(socket, "end");
    assert.equal(text.match(/HTTP\/1\.1 200/g)?.length, 2);
    assert.match(text, /\r\n\r\n4\r\nbye\n\r\n0\r\n\r\n$/, "the second answer, whole and last");
    assert.equal(upstream.connections(), 1);
    socket.destroy();
  });

  test("an upstream that closes after its response ends the client's connection too", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const agent = new https.Agent({ keepAlive: true, ca: brokerCa.certPem });
    closers.push(() => agent.destroy());
    const first = await request(front, HOST, { agent, path: "/close" });
    assert.equal(first.body.toString(), "bye\n");
    assert.equal(first.headers.connection, "close");
    await waitFor(() => front.open === 0, { what: "the client's connection to close" });
    const second = await request(front, HOST, { agent, path: "/headers" });
    assert.equal(second.status, 200);
    assert.equal(front.connections, 2);
    assert.equal(upstream.connections(), 2, "a second tunnel, not a second connection from the first");
  });
});

describe("broker: closing", () => {
  test("close() ends both connections at once, and is not taken for a client's TLS failure", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const agent = new https.Agent({ keepAlive: true, ca: brokerCa.certPem });
    closers.push(() => agent.destroy());
    assert.equal((await request(front, HOST, { agent, path: "/headers" })).status, 200);
    assert.equal(front.open, 1);
    assert.equal(upstream.open(), 1);
    for (const interception of front.interceptions) interception.close();
    await waitFor(() => front.open === 0 && upstream.open() === 0, { what: "both connections to close" });
    assert.deepEqual(front.warnings, []);
  });
});

describe("broker: bodies", () => {
  test("Expect: 100-continue: the client hears 100 from the upstream before it sends its body", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const body = Buffer.alloc(300_000, 7);
    const req = https.request({
      host: "127.0.0.1",
      port: front.port,
      servername: HOST,
      ca: brokerCa.certPem,
      agent: false,
      method: "POST",
      path: "/upload",
      headers: { host: HOST, expect: "100-continue", "content-length": body.length },
    });
    await once(req, "continue");
    req.end(body);
    const [res] = (await once(req, "response")) as [http.IncomingMessage];
    let text = "";
    for await (const chunk of res) text += chunk;
    assert.deepEqual(JSON.parse(text), { size: body.length, sha256: createHash("sha256").update(body).digest("hex") });
    assert.equal(upstream.requests[0]?.headers.expect, "100-continue");
  });

  test("a chunked upload of a few MB arrives whole", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const req = https.request({
      host: "127.0.0.1",
      port: front.port,
      servername: HOST,
      ca: brokerCa.certPem,
      agent: false,
      method: "PUT",
      path: "/upload",
      headers: { host: HOST },
    });
    const hash = createHash("sha256");
    let size = 0;
    for (let i = 0; i < 6 * 16; i++) {
      const chunk = Buffer.alloc(64 * 1024, i);
      hash.update(chunk);
      size += chunk.length;
      if (!req.write(chunk)) await once(req, "drain");
    }
    req.end();
    const [res] = (await once(req, "response")) as [http.IncomingMessage];
    let text = "";
    for await (const chunk of res) text += chunk;
    assert.deepEqual(JSON.parse(text), { size, sha256: hash.digest("hex") });
    assert.equal(upstream.requests[0]?.headers["transfer-encoding"], "chunked");
  });

  test("a 50 MB download arrives whole (throughput printed, against a plain TCP pipe)", async () => {
    const bytes = 50 * MB;
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const expected = createHash("sha256");
    for (let sent = 0; sent < bytes; sent += PATTERN.length)
      expected.update(PATTERN.subarray(0, Math.min(PATTERN.length, bytes - sent)));
    const digest = expected.digest("hex");

    const brokered = await timedDownload({ port: front.port, ca: brokerCa.certPem }, bytes);
    assert.equal(brokered.size, bytes);
    assert.equal(brokered.sha256, digest);

    // The same download, end-to-end TLS through a front that only pipes bytes (what a tunnel does).
    const pipe = net.createServer((client) => {
      const upstreamSocket = net.connect(upstream.port, "127.0.0.1");
      client.pipe(upstreamSocket).pipe(client);
      const end = (): void => {
        client.destroy();
        upstreamSocket.destroy();
      };
      client.on("error", end).on("close", end);
      upstreamSocket.on("error", end).on("close", end);
    });
    pipe.listen(0, "127.0.0.1");
    await once(pipe, "listening");
    closers.push(() => void pipe.close());
    const plain = await timedDownload(
      { port: (pipe.address() as net.AddressInfo).port, ca: upstreamCa.certPem },
      bytes,
    );
    assert.equal(plain.sha256, digest);
    const rate = (ms: number): string => `${((bytes / MB / ms) * 1000).toFixed(0)} MB/s`;
    const brokeredText = `brokered ${brokered.ms.toFixed(0)} ms (${rate(brokered.ms)})`;
    console.log(`50 MB download: ${brokeredText}, plain TCP pipe ${plain.ms.toFixed(0)} ms (${rate(plain.ms)})`);
  });
});

async function timedDownload(
  via: { port: number; ca: string },
  bytes: number,
): Promise<{ ms: number; size: number; sha256: string }> {
  const start = performance.now();
  const req = https.request({
    host: "127.0.0.1",
    port: via.port,
    servername: HOST,
    ca: via.ca,
    agent: false,
    path: `/download?bytes=${bytes}`,
    headers: { host: HOST },
  });
  req.end();
  const [res] = (await once(req, "response")) as [http.IncomingMessage];
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of res) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { ms: performance.now() - start, size, sha256: hash.digest("hex") };
}

describe("broker: failures", () => {
  const assertNoSecret = (front: Front, answer: Answer): void => {
    for (const text of [answer.body.toString(), JSON.stringify(answer.headers), JSON.stringify(front.warnings)]) {
      assert.ok(!text.includes(SECRET) && !text.includes("sk-broker"), `the value leaked: ${text}`);
    }
  };

  test("an upstream whose certificate is not trusted: 502 upstream_tls naming the host and why", async () => {
    const upstream = await startUpstream(strangerCa, HOST);
    const front = await startFront(upstream, HOST);
    const answer = await request(front, HOST, { path: "/headers" });
    assert.equal(answer.status, 502);
    assert.equal(answer.headers["x-alive-egress-error"], "upstream_tls");
    const body = answer.body.toString();
    assert.match(body, new RegExp(`^alive egress proxy: upstream_tls: TLS to ${HOST} port ${upstream.port} failed: `));
    assert.match(body, /unable to verify|UNABLE_TO_VERIFY/);
    assert.deepEqual(upstream.requests, [], "nothing was sent to it");
    assert.equal(front.onRequests, 0);
    await waitFor(() => front.warnings.length > 0, { what: "a warning" });
    assert.deepEqual(
      front.warnings.map(({ msg, fields }) => [msg, fields?.host]),
      [["egress broker: TLS to the upstream failed", HOST]],
    );
    assertNoSecret(front, answer);
  });

  test("the 502 waits for the client's request, however late it comes after the upstream failed", async () => {
    const upstream = await startUpstream(strangerCa, HOST);
    const front = await startFront(upstream, HOST);
    const socket = tls.connect({ host: "127.0.0.1", port: front.port, servername: HOST, ca: brokerCa.certPem });
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
    const ended = once(socket, "end");
    await once(socket, "secureConnect");
    await waitFor(() => front.warnings.length > 0, { what: "the upstream's TLS to fail" });
    socket.write(`GET /headers HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    await withTimeout(ended, 10_000, "the answer");
    assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.match(text, /\r\nx-alive-egress-error: upstream_tls\r\n/);
    assert.match(text, /\r\nConnection: close\r\n/);
    socket.destroy();
  });

  test("an upstream whose certificate names another host: 502 upstream_tls", async () => {
    const upstream = await startUpstream(upstreamCa, "other.upstream.test");
    const front = await startFront(upstream, HOST);
    const answer = await request(front, HOST, { path: "/headers" });
    assert.equal(answer.status, 502);
    assert.equal(answer.headers["x-alive-egress-error"], "upstream_tls");
    assert.match(answer.body.toString(), /ERR_TLS_CERT_ALTNAME_INVALID|altnames/);
    assertNoSecret(front, answer);
  });

  test("an upstream that resets before answering: 502 upstream_failed", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const answer = await request(front, HOST, { path: "/reset" });
    assert.equal(answer.status, 502);
    assert.equal(answer.headers["x-alive-egress-error"], "upstream_failed");
    assert.match(answer.body.toString(), new RegExp(`${HOST} port ${upstream.port}: `));
    assertNoSecret(front, answer);
  });

  test("an upstream that resets mid-response cuts the client's connection", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const req = https.request({
      host: "127.0.0.1",
      port: front.port,
      servername: HOST,
      ca: brokerCa.certPem,
      agent: false,
      path: "/cut",
      headers: { host: HOST },
    });
    req.end();
    const [res] = (await once(req, "response")) as [http.IncomingMessage];
    assert.equal(res.statusCode, 200);
    await assert.rejects(async () => {
      for await (const _chunk of res);
    }, /aborted|ECONNRESET/);
  });

  test("a client that does not trust the broker's CA is warned about, and nothing reaches the upstream", async () => {
    const upstream = await startUpstream(upstreamCa, HOST);
    const front = await startFront(upstream, HOST);
    const req = https.request({
      host: "127.0.0.1",
      port: front.port,
      servername: HOST,
      agent: false,
      path: "/headers",
      headers: { host: HOST },
    });
    req.end();
    await assert.rejects(once(req, "response"), /self[- ]signed|unable to verify|UNABLE_TO_GET_ISSUER/i);
    await waitFor(() => front.warnings.some(({ msg }) => msg.startsWith("egress broker: the client's TLS failed")), {
      what: "the client TLS warning",
    });
    assert.deepEqual(upstream.requests, []);
  });
});

describe("broker: IP literals", () => {
  test("a CONNECT to an IP literal gets a leaf with an IP SAN, which the client accepts", async () => {
    const upstream = await startUpstream(upstreamCa, "127.0.0.1");
    const front = await startFront(upstream, "127.0.0.1");
    const answer = await request(front, "127.0.0.1", { path: "/headers" });
    assert.equal(answer.status, 200);
    const seen = JSON.parse(answer.body.toString()) as Record<string, string>;
    assert.equal(seen.authorization, SECRET);
  });
});
