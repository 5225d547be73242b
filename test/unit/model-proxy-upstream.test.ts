/**
 * The model proxy when the upstream misbehaves: unreachable, a failing or stalled TLS handshake,
 * a response cut short; and when the client goes away mid-stream. All of it on loopback.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import {
  createModelProxy,
  upstreamPathFor,
  type ModelProxyOptions,
  type UpstreamFailure,
} from "../../src/model-proxy/server.js";
import { withTimeout } from "../support/wait.js";
import { createLogger } from "../../src/log.js";

const TOKEN = "alive-turn-test";
const REF = "turn-1";

let dir: string;
let proxies = 0;

interface Proxy {
  socketPath: string;
  failures: Array<[string, UpstreamFailure]>;
  close(): Promise<void>;
}

const servers: http.Server[] = [];

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}

async function startProxy(
  upstreamBaseUrl: string,
  connectTimeoutMs = 5_000,
  extra: Partial<ModelProxyOptions<string>> = {},
): Promise<Proxy> {
  const failures: Array<[string, UpstreamFailure]> = [];
  const server = createModelProxy<string>({
    upstreamBaseUrl,
    apiKey: "sk-real",
    authorize: (token) => (token === TOKEN ? REF : null),
    connectTimeoutMs,
    onUpstreamError: (ref, failure) => failures.push([ref, failure]),
    ...extra,
  });
  const socketPath = path.join(dir, `proxy-${++proxies}.sock`);
  await listen(server, socketPath);
  return { socketPath, failures, close: () => closeServer(server) };
}

function listen(server: net.Server, at: string | 0): Promise<void> {
  return new Promise((resolve) => (at === 0 ? server.listen(0, "127.0.0.1", resolve) : server.listen(at, resolve)));
}

function closeServer(server: net.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  if (server instanceof http.Server) server.closeAllConnections();
  return closed;
}

function post(socketPath: string): { response: Promise<IncomingMessage>; request: http.ClientRequest } {
  const request = http.request({
    socketPath,
    path: "/v1/responses",
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    agent: false,
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.on("response", resolve);
    request.on("error", reject);
  });
  request.end("{}");
  return { response, request };
}

async function errorOf(
  res: IncomingMessage,
): Promise<{ status: number; error: { message: string; type: string; code: string } }> {
  let body = "";
  for await (const chunk of res) body += String(chunk);
  return {
    status: res.statusCode ?? 0,
    ...(JSON.parse(body) as { error: { message: string; type: string; code: string } }),
  };
}

const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port;

describe("model proxy upstream failures", () => {
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "model-proxy-up-"));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test("an upstream on a closed port is 502 model_unreachable at once, and reported", async () => {
    const probe = net.createServer();
    await listen(probe, 0);
    const port = portOf(probe);
    await closeServer(probe);
    const proxy = await startProxy(`http://127.0.0.1:${port}/v1`);
    try {
      const started = Date.now();
      const reply = await errorOf(await withTimeout(post(proxy.socketPath).response, 5_000, "the 502"));
      assert.ok(Date.now() - started < 2_000);
      assert.equal(reply.status, 502);
      assert.equal(reply.error.code, "model_unreachable");
      assert.equal(reply.error.type, "server_error");
      assert.match(reply.error.message, /refused the connection/);
      assert.deepEqual(proxy.failures, [
        [REF, { code: "model_unreachable", status: 502, message: reply.error.message }],
      ]);
    } finally {
      await proxy.close();
    }
  });

  test("a kept-alive connection the upstream closes as the proxy reuses it: the request goes once more on a new one, and succeeds", async () => {
    // Answers the first request on each connection and keeps it alive; a second request on the same
    // connection finds it destroyed unanswered, as a keep-alive timeout racing the reuse does.
    const served = new WeakMap<net.Socket, number>();
    let connections = 0;
    const upstream = http.createServer((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1) {
        req.socket.destroy();
        return;
      }
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ id: "resp", usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 } }));
    });
    upstream.on("connection", () => (connections += 1));
    await listen(upstream, 0);
    const proxy = await startProxy(`http://127.0.0.1:${portOf(upstream)}/v1`);
    try {
      for (let i = 0; i < 3; i++) {
        const res = await withTimeout(post(proxy.socketPath).response, 5_000, `answer ${i}`);
        for await (const chunk of res) void chunk;
        assert.equal(res.statusCode, 200, `request ${i} answered, not model_unreachable`);
      }
      assert.deepEqual(proxy.failures, []);
      assert.ok(connections >= 3, `each retry on a new connection (${connections})`);
    } finally {
      await proxy.close();
      await closeServer(upstream);
    }
  });

  test("upstream connections are bounded (maxSockets 1: the second request waits for the first's), and a JSON body's usage is read whatever its size", async () => {
    let connections = 0;
    let inFlight = 0;
    let most = 0;
    const held: ServerResponse[] = [];
    const upstream = http.createServer((req, res) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      res.on("finish", () => (inFlight -= 1));
      req.resume();
      held.push(res);
    });
    upstream.on("connection", () => (connections += 1));
    await listen(upstream, 0);
    const usages: unknown[] = [];
    const proxy = await startProxy(`http://127.0.0.1:${portOf(upstream)}/v1`, 5_000, {
      concurrencyPerTurn: 2,
      maxSockets: 1,
      onUsage: (_ref, usage) => usages.push(usage),
    });
    try {
      const answers = [post(proxy.socketPath).response, post(proxy.socketPath).response];
      // Larger than any body the proxy could keep whole: the usage comes after 9 MiB of output.
      const usage = { input_tokens: 7, output_tokens: 2, total_tokens: 9 };
      const body = JSON.stringify({
        output: [{ type: "message", content: [{ text: "y".repeat(9 * 1024 * 1024) }] }],
        usage,
      });
      for (let i = 0; i < 2; i++) {
        await withTimeout(
          waitFor(() => held.length === i + 1),
          5_000,
          `request ${i} upstream`,
        );
        held[i]!.writeHead(200, { "content-type": "application/json" }).end(body);
        const res = await withTimeout(answers[i]!, 5_000, `answer ${i}`);
        let size = 0;
        for await (const chunk of res) size += (chunk as Buffer).length;
        assert.equal(size, Buffer.byteLength(body));
      }
      assert.equal(connections, 1, "the second request waited for the first's connection");
      assert.equal(most, 1);
      await withTimeout(
        waitFor(() => usages.length === 2),
        5_000,
        "both usages",
      );
      assert.deepEqual(usages[0], {
        inputTokens: 7,
        cachedTokens: 0,
        outputTokens: 2,
        reasoningTokens: 0,
        totalTokens: 9,
      });
    } finally {
      await proxy.close();
      await closeServer(upstream);
    }
  });

  test("https to a plain HTTP server fails the TLS handshake: 502 saying so", async () => {
    const plain = http.createServer((_req, res) => res.end("not TLS"));
    await listen(plain, 0);
    const proxy = await startProxy(`https://127.0.0.1:${portOf(plain)}/v1`);
    try {
      const reply = await errorOf(await withTimeout(post(proxy.socketPath).response, 5_000, "the 502"));
      assert.equal(reply.status, 502);
      assert.match(reply.error.message, /TLS handshake/);
      assert.equal(proxy.failures.length, 1);
    } finally {
      await proxy.close();
      await closeServer(plain);
    }
  });

  test("a handshake that never completes is 504 after connectTimeoutMs", async () => {
    // Accepts TCP and never speaks: TLS stays in its handshake.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket));
    await listen(silent, 0);
    const proxy = await startProxy(`https://127.0.0.1:${portOf(silent)}/v1`, 300);
    try {
      const started = Date.now();
      const reply = await errorOf(await withTimeout(post(proxy.socketPath).response, 5_000, "the 504"));
      assert.ok(Date.now() - started >= 250);
      assert.equal(reply.status, 504);
      assert.match(reply.error.message, /did not accept a connection within 300 ms/);
      assert.equal(proxy.failures[0]?.[1].status, 504);
    } finally {
      await proxy.close();
      for (const socket of sockets) socket.destroy();
      await closeServer(silent);
    }
  });

  test("a client that disconnects mid-stream: the response is still read to its end and its usage counted", async () => {
    let finishUpstream!: () => void;
    const upstreamDone = new Promise<string>((resolve) => {
      const upstream = http.createServer((req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write('event: response.created\ndata: {"type":"response.created"}\n\n');
        finishUpstream = () => {
          const usage = { input_tokens: 10, output_tokens: 5, total_tokens: 15 };
          res.end(
            `event: response.completed\ndata: ${JSON.stringify({ type: "response.completed", response: { usage } })}\n\n`,
          );
        };
        res.on("close", () => resolve(res.writableFinished ? "finished" : "cut"));
        req.resume();
      });
      servers.push(upstream);
    });
    const upstream = servers.at(-1)!;
    await listen(upstream, 0);
    const usages: unknown[] = [];
    const logLines: string[] = [];
    const logger = createLogger({ level: "debug", write: (line) => void logLines.push(line) });
    const proxy = await startProxy(`http://127.0.0.1:${portOf(upstream)}/v1`, 5_000, {
      onUsage: (_ref, usage) => usages.push(usage),
      logger,
    });
    try {
      const res = await withTimeout(post(proxy.socketPath).response, 5_000, "response headers");
      await withTimeout(new Promise((resolve) => res.once("data", resolve)), 5_000, "the first event");
      res.destroy();
      // The proxy has seen the client go before the upstream finishes.
      await withTimeout(
        waitFor(() => logLines.some((line) => line.includes("the client left"))),
        5_000,
        "the proxy to see the client leave",
      );
      finishUpstream();
      assert.equal(
        await withTimeout(upstreamDone, 5_000, "the upstream to finish"),
        "finished",
        "the proxy read the response to its end",
      );
      await withTimeout(
        waitFor(() => usages.length === 1),
        5_000,
        "the usage",
      );
      assert.deepEqual(usages, [
        { inputTokens: 10, cachedTokens: 0, outputTokens: 5, reasoningTokens: 0, totalTokens: 15 },
      ]);
      assert.deepEqual(proxy.failures, [], "a client leaving is not an upstream failure");
    } finally {
      await proxy.close();
      await closeServer(upstream);
    }
  });

  test("after the client left, an upstream that goes quiet is cut after drainIdleMs", async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
    const upstream = http.createServer((req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('event: response.created\ndata: {"type":"response.created"}\n\n');
      res.on("close", () => upstreamClosed());
      req.resume();
    });
    await listen(upstream, 0);
    const proxy = await startProxy(`http://127.0.0.1:${portOf(upstream)}/v1`, 5_000, { drainIdleMs: 200 });
    try {
      const res = await withTimeout(post(proxy.socketPath).response, 5_000, "response headers");
      await withTimeout(new Promise((resolve) => res.once("data", resolve)), 5_000, "the first event");
      const left = Date.now();
      res.destroy();
      await withTimeout(closed, 5_000, "the upstream to see its connection close");
      assert.ok(Date.now() - left >= 150, "not before the idle time");
    } finally {
      await proxy.close();
      await closeServer(upstream);
    }
  });

  test("an upstream that dies mid-stream cuts the client's response short", async () => {
    const upstream = http.createServer((req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('event: response.created\ndata: {"type":"response.created"}\n\n', () => res.socket?.destroy());
      req.resume();
    });
    await listen(upstream, 0);
    const proxy = await startProxy(`http://127.0.0.1:${portOf(upstream)}/v1`);
    try {
      const res = await withTimeout(post(proxy.socketPath).response, 5_000, "response headers");
      const ended = new Promise<string>((resolve) => {
        res.on("error", () => resolve("error"));
        res.on("close", () => resolve(res.complete ? "complete" : "cut"));
        res.resume();
      });
      assert.notEqual(await withTimeout(ended, 5_000, "the client response to end"), "complete");
    } finally {
      await proxy.close();
      await closeServer(upstream);
    }
  });
});

describe("upstreamPathFor", () => {
  test("maps the base path onto the upstream's, keeping the query", () => {
    assert.deepEqual(upstreamPathFor("/v1/responses?a=1", "/v1", "/v1"), { pathname: "/v1/responses", search: "?a=1" });
    assert.deepEqual(upstreamPathFor("/v1/responses", "/v1", "/api/openai"), {
      pathname: "/api/openai/responses",
      search: "",
    });
    assert.deepEqual(upstreamPathFor("/v1", "/v1", ""), { pathname: "", search: "" });
    assert.deepEqual(upstreamPathFor("/anything", "", "/v1"), { pathname: "/v1/anything", search: "" });
  });

  test("refuses targets outside the base path, absolute-form targets and dot-segment escapes", () => {
    for (const target of [
      "/v2/responses",
      "/v1x",
      "/v1/../admin",
      "/v1/%2e%2e/admin",
      "/v1/.%2E/admin",
      "//evil.example/v1/responses",
      "http://evil.example/v1/responses",
      "*",
    ]) {
      assert.equal(upstreamPathFor(target, "/v1", "/v1"), null, target);
    }
  });

  test("a double slash inside the path stays a path: the upstream's host cannot change", () => {
    assert.deepEqual(upstreamPathFor("/v1//evil.example/x", "/v1", ""), { pathname: "//evil.example/x", search: "" });
  });
});
