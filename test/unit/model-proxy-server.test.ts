/**
 * The model proxy on a Unix socket, in front of the scripted Responses stub on loopback: what
 * reaches the upstream, what the client gets back, and when.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, Server } from "node:http";
import os from "node:os";
import path from "node:path";
import { createLogger } from "../../src/log.js";
import { TurnCredentials } from "../../src/model-proxy/credentials.js";
import { createModelProxy, type ModelProxyOptions, type TokenUsage, type UpstreamFailure } from "../../src/model-proxy/server.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { withTimeout } from "../support/wait.js";

const REAL_KEY = "sk-real-test-key-0123456789";
const REF = { workspaceId: "w1", turnId: "t1" };
type Ref = typeof REF;

interface Harness {
  socketPath: string;
  credentials: TurnCredentials<Ref>;
  token: string;
  usages: Array<[Ref, TokenUsage]>;
  requests: Ref[];
  failures: Array<[Ref, UpstreamFailure]>;
  close(): Promise<void>;
}

let dir: string;
let stub: ResponsesStub;
let proxies = 0;
/** Every log line any proxy wrote, and every credential issued: no line may hold a credential or the key. */
const logLines: string[] = [];
const issued: string[] = [];
const logger = createLogger({ level: "debug", write: (line) => logLines.push(line) });

/** A proxy listening on a fresh Unix socket, recording what its callbacks saw. */
async function startProxy(overrides: Partial<ModelProxyOptions<Ref>> = {}): Promise<Harness> {
  const credentials = new TurnCredentials<Ref>();
  const harness: Omit<Harness, "close"> = { socketPath: path.join(dir, `proxy-${++proxies}.sock`), credentials, token: credentials.issue(REF), usages: [], requests: [], failures: [] };
  const server = createModelProxy<Ref>({
    upstreamBaseUrl: stub.baseUrl,
    apiKey: REAL_KEY,
    authorize: (token) => credentials.resolve(token),
    onUsage: (ref, usage) => harness.usages.push([ref, usage]),
    onRequest: (ref) => harness.requests.push(ref),
    onUpstreamError: (ref, failure) => harness.failures.push([ref, failure]),
    logger,
    logFields: (ref) => ({ ...ref }),
    ...overrides,
  });
  issued.push(harness.token);
  await new Promise<void>((resolve) => server.listen(harness.socketPath, resolve));
  return { ...harness, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  raw: string;
}

/** Starts a request over the proxy's socket; resolves with the response as soon as its headers are in. */
function send(socketPath: string, options: { path?: string; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: options.path ?? "/v1/responses", method: options.method ?? "POST", headers: { "content-type": "application/json", ...options.headers }, agent: false });
    req.on("response", resolve);
    req.on("error", reject);
    req.end(options.body ?? JSON.stringify({ model: "gpt-5.5", stream: true, input: [] }));
  });
}

async function read(res: IncomingMessage): Promise<Reply> {
  let body = "";
  for await (const chunk of res) body += String(chunk);
  return { status: res.statusCode ?? 0, headers: res.headers, body, raw: JSON.stringify(res.rawHeaders) + body };
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
const eventTypes = (body: string): string[] => [...body.matchAll(/^event: (.+)$/gm)].map((m) => m[1] ?? "");

describe("model proxy", () => {
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "model-proxy-"));
    stub = await ResponsesStub.start();
  });
  after(async () => {
    if (process.env.SHOW_PROXY_LOG) console.log(logLines.join("\n"));
    assert.ok(logLines.length > 0, "the proxy logged something");
    for (const line of logLines) {
      for (const secret of [REAL_KEY, ...issued]) assert.ok(!line.includes(secret), `a log line holds a secret: ${line}`);
    }
    await stub.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => stub.reset());

  test("forwards a message turn with the real key and streams the SSE back; usage counted exactly", async () => {
    const proxy = await startProxy();
    try {
      stub.script({ kind: "message", text: "hello", usage: { input_tokens: 1200, cached_tokens: 800, output_tokens: 42, reasoning_tokens: 17 } });
      const reply = await read(await send(proxy.socketPath, { path: "/v1/responses?trace=1", headers: bearer(proxy.token) }));
      assert.equal(reply.status, 200);
      assert.equal(reply.headers["content-type"], "text/event-stream");
      assert.deepEqual(eventTypes(reply.body), ["response.created", "response.output_item.done", "response.completed"]);
      assert.ok(!reply.raw.includes(REAL_KEY), "the client never sees the real key");

      const [seen] = stub.requests;
      assert.equal(stub.requests.length, 1);
      assert.equal(seen?.path, "/v1/responses");
      assert.equal(seen?.headers.authorization, `Bearer ${REAL_KEY}`);
      assert.ok(!JSON.stringify(seen?.headers).includes(proxy.token), "the upstream never sees the credential");
      assert.equal(seen?.body.model, "gpt-5.5");

      assert.deepEqual(proxy.requests, [REF]);
      assert.deepEqual(proxy.usages, [[REF, { inputTokens: 1200, cachedTokens: 800, outputTokens: 42, reasoningTokens: 17, totalTokens: 1242 }]]);
    } finally {
      await proxy.close();
    }
  });

  test("each event reaches the client as it arrives: the first before the upstream has finished", async () => {
    const proxy = await startProxy();
    try {
      // The stub sends headers and response.created, then holds the rest for a minute.
      stub.script({ kind: "message", text: "slow", delayMs: 60_000 });
      const res = await withTimeout(send(proxy.socketPath, { headers: bearer(proxy.token) }), 5_000, "response headers");
      const first = await withTimeout(new Promise<string>((resolve) => res.once("data", (chunk) => resolve(String(chunk)))), 5_000, "the first event");
      assert.deepEqual(eventTypes(first), ["response.created"]);
      assert.deepEqual(proxy.usages, []);
      res.destroy();
    } finally {
      await proxy.close();
    }
  });

  test("a missing, wrong or revoked credential is 401 in OpenAI's shape and never reaches upstream", async () => {
    const proxy = await startProxy();
    try {
      const revoked = proxy.credentials.issue({ workspaceId: "w1", turnId: "old" });
      proxy.credentials.revoke(revoked);
      issued.push(revoked);
      for (const headers of [{}, bearer("alive-turn-wrong"), bearer(REAL_KEY), bearer(revoked), { authorization: proxy.token }]) {
        const reply = await read(await send(proxy.socketPath, { headers }));
        assert.equal(reply.status, 401, JSON.stringify(headers));
        const body = JSON.parse(reply.body) as { error: Record<string, unknown> };
        assert.equal(body.error.code, "invalid_api_key");
        assert.equal(body.error.type, "invalid_request_error");
        assert.equal(typeof body.error.message, "string");
      }
      assert.equal(stub.requests.length + stub.otherRequests.length, 0, "the stub saw no request");
      assert.deepEqual(proxy.requests, []);
    } finally {
      await proxy.close();
    }
  });

  test("a refusal from admit is answered as given and nothing is forwarded", async () => {
    const proxy = await startProxy({ admit: () => ({ status: 429, code: "budget_exceeded", message: "token budget of 1000 spent" }) });
    try {
      const reply = await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }));
      assert.equal(reply.status, 429);
      assert.deepEqual(JSON.parse(reply.body), { error: { message: "token budget of 1000 spent", type: "invalid_request_error", param: null, code: "budget_exceeded" } });
      assert.equal(stub.requests.length, 0);
      assert.deepEqual(proxy.requests, []);
    } finally {
      await proxy.close();
    }
  });

  test("a WebSocket upgrade is answered 426 at once and not forwarded", async () => {
    const proxy = await startProxy();
    try {
      const started = Date.now();
      const res = await send(proxy.socketPath, { method: "GET", headers: { ...bearer(proxy.token), connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" }, body: "" });
      const reply = await read(res);
      assert.equal(reply.status, 426);
      assert.equal((JSON.parse(reply.body) as { error: { code: string } }).error.code, "websocket_unsupported");
      assert.ok(Date.now() - started < 1_000);
      assert.equal(stub.requests.length + stub.otherRequests.length, 0);
    } finally {
      await proxy.close();
    }
  });

  test("paths outside the base path are 404 and not forwarded, also via dot segments", async () => {
    const proxy = await startProxy();
    try {
      for (const target of ["/admin", "/v1/../admin", "/v1/%2e%2e/admin", "/v10/responses"]) {
        const reply = await read(await send(proxy.socketPath, { path: target, headers: bearer(proxy.token) }));
        assert.equal(reply.status, 404, target);
      }
      assert.equal(stub.requests.length + stub.otherRequests.length, 0);
      // A double slash stays part of the path: it cannot name another host.
      assert.equal((await read(await send(proxy.socketPath, { path: "/v1//evil.example/responses", headers: bearer(proxy.token) }))).status, 200);
      assert.equal(stub.requests[0]?.path, "/v1//evil.example/responses");
    } finally {
      await proxy.close();
    }
  });

  test("hop-by-hop and proxy headers are dropped; the upstream is asked for an uncompressed body", async () => {
    const proxy = await startProxy();
    try {
      const headers = { ...bearer(proxy.token), connection: "keep-alive, x-hop", "x-hop": "1", "proxy-authorization": "Basic abc", "accept-encoding": "gzip, br", "x-kept": "yes" };
      await read(await send(proxy.socketPath, { headers }));
      const seen = stub.requests[0]?.headers ?? {};
      assert.equal(seen["x-kept"], "yes");
      assert.equal(seen["x-hop"], undefined);
      assert.equal(seen["proxy-authorization"], undefined);
      assert.equal(seen["accept-encoding"], "identity");
    } finally {
      await proxy.close();
    }
  });

  test("a JSON response's usage counts too; upstream errors pass through unchanged", async () => {
    const proxy = await startProxy();
    try {
      stub.script(
        { kind: "http", status: 200, body: { id: "resp_1", usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 } } },
        { kind: "http", status: 400, body: { error: { message: "bad input", type: "invalid_request_error", code: null } } },
      );
      assert.equal((await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }))).status, 200);
      const failed = await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }));
      assert.equal(failed.status, 400);
      assert.equal((JSON.parse(failed.body) as { error: { message: string } }).error.message, "bad input");
      assert.deepEqual(proxy.usages, [[REF, { inputTokens: 7, cachedTokens: 0, outputTokens: 3, reasoningTokens: 0, totalTokens: 10 }]]);
      assert.deepEqual(proxy.failures, []);
    } finally {
      await proxy.close();
    }
  });
});
