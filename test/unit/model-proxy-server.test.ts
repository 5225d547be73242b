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
import {
  createModelProxy,
  type ModelProxyOptions,
  type TokenUsage,
  type UpstreamFailure,
} from "../../src/model-proxy/server.js";
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
  const harness: Omit<Harness, "close"> = {
    socketPath: path.join(dir, `proxy-${++proxies}.sock`),
    credentials,
    token: credentials.issue(REF),
    usages: [],
    requests: [],
    failures: [],
  };
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
function send(
  socketPath: string,
  options: { path?: string; method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath,
      path: options.path ?? "/v1/responses",
      method: options.method ?? "POST",
      headers: { "content-type": "application/json", ...options.headers },
      agent: false,
    });
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
      for (const secret of [REAL_KEY, ...issued])
        assert.ok(!line.includes(secret), `a log line holds a secret: ${line}`);
    }
    await stub.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => stub.reset());

  test("forwards a message turn with the real key and streams the SSE back; usage counted exactly", async () => {
    const proxy = await startProxy();
    try {
      stub.script({
        kind: "message",
        text: "hello",
        usage: { input_tokens: 1200, cached_tokens: 800, output_tokens: 42, reasoning_tokens: 17 },
      });
      const reply = await read(
        await send(proxy.socketPath, { path: "/v1/responses?trace=1", headers: bearer(proxy.token) }),
      );
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
      assert.deepEqual(proxy.usages, [
        [REF, { inputTokens: 1200, cachedTokens: 800, outputTokens: 42, reasoningTokens: 17, totalTokens: 1242 }],
      ]);
    } finally {
      await proxy.close();
    }
  });

  test("each event reaches the client as it arrives: the first before the upstream has finished", async () => {
    const proxy = await startProxy();
    try {
      // The stub sends headers and response.created, then holds the rest for a minute.
      stub.script({ kind: "message", text: "slow", delayMs: 60_000 });
      const res = await withTimeout(
        send(proxy.socketPath, { headers: bearer(proxy.token) }),
        5_000,
        "response headers",
      );
      const first = await withTimeout(
        new Promise<string>((resolve) => res.once("data", (chunk) => resolve(String(chunk)))),
        5_000,
        "the first event",
      );
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
      for (const headers of [
        {},
        bearer("alive-turn-wrong"),
        bearer(REAL_KEY),
        bearer(revoked),
        { authorization: proxy.token },
      ]) {
        const reply = await read(await send(proxy.socketPath, { headers }));
        assert.equal(reply.status, 401, JSON.stringify(headers));
        assert.equal(reply.headers["x-alive-model-refused"], "credential");
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
    const proxy = await startProxy({
      admit: () => ({ status: 429, code: "budget_exceeded", message: "token budget of 1000 spent" }),
    });
    try {
      const reply = await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }));
      assert.equal(reply.status, 429);
      assert.equal(reply.headers["x-alive-model-refused"], "budget_exceeded");
      assert.deepEqual(JSON.parse(reply.body), {
        error: {
          message: "token budget of 1000 spent",
          type: "invalid_request_error",
          param: null,
          code: "budget_exceeded",
        },
      });
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
      const res = await send(proxy.socketPath, {
        method: "GET",
        headers: {
          ...bearer(proxy.token),
          connection: "Upgrade",
          upgrade: "websocket",
          "sec-websocket-version": "13",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
        body: "",
      });
      const reply = await read(res);
      assert.equal(reply.status, 426);
      assert.equal(reply.headers["x-alive-model-refused"], "websocket");
      assert.equal((JSON.parse(reply.body) as { error: { code: string } }).error.code, "websocket_unsupported");
      assert.ok(Date.now() - started < 1_000);
      assert.equal(stub.requests.length + stub.otherRequests.length, 0);
    } finally {
      await proxy.close();
    }
  });

  test("only codex's own endpoints are forwarded: every other method and path is 403 with a reason and never reaches upstream", async () => {
    const refusals: Array<[Ref | null, string]> = [];
    const proxy = await startProxy({ onRefusal: (ref, reason) => refusals.push([ref, reason]) });
    try {
      const refused: Array<[string, string]> = [
        ["GET", "/v1/files"],
        ["DELETE", "/v1/files/x"],
        ["POST", "/v1/chat/completions"],
        ["POST", "/v1/embeddings"],
        ["GET", "/v1/models"],
        ["POST", "/v1/batches"],
        ["POST", "/v1/fine_tuning/jobs"],
        ["GET", "/v1/vector_stores"],
        ["GET", "/v1/responses"],
        ["GET", "/v1/responses/resp_1"],
        ["DELETE", "/v1/responses/resp_1"],
        ["POST", "/v1/responses/resp_1/cancel"],
        ["PUT", "/v1/responses"],
        ["POST", "/admin"],
        ["POST", "/v1/../admin"],
        ["POST", "/v1/%2e%2e/admin"],
        ["POST", "/v10/responses"],
        ["POST", "/v1//evil.example/responses"],
        ["POST", "/v1/responses/"],
      ];
      for (const [method, target] of refused) {
        const reply = await read(
          await send(proxy.socketPath, {
            method,
            path: target,
            headers: bearer(proxy.token),
            ...(method === "GET" || method === "DELETE" ? { body: "" } : {}),
          }),
        );
        assert.equal(reply.status, 403, `${method} ${target}`);
        assert.equal(reply.headers["x-alive-model-refused"], "path", `${method} ${target}`);
        assert.equal((JSON.parse(reply.body) as { error: { code: string } }).error.code, "path");
      }
      assert.equal(stub.requests.length + stub.otherRequests.length, 0, "the stub saw none of them");
      assert.deepEqual(proxy.requests, []);
      assert.equal(refusals.length, refused.length, "each refusal is reported");
      assert.ok(refusals.every(([ref, reason]) => ref?.turnId === "t1" && reason === "path"));
      const logged = logLines.filter(
        (line) =>
          line.includes("request refused") && line.includes('"reason":"path"') && line.includes('"workspaceId":"w1"'),
      );
      assert.equal(logged.length, 1, "logged once per workspace and reason");

      for (const target of ["/v1/responses", "/v1/responses?trace=1", "/v1/responses/compact"]) {
        assert.equal(
          (await read(await send(proxy.socketPath, { path: target, headers: bearer(proxy.token) }))).headers[
            "x-alive-model-refused"
          ],
          undefined,
          target,
        );
      }
      // The stub serves POST …/responses and records anything else.
      assert.deepEqual(
        stub.requests.map((r) => r.path),
        ["/v1/responses", "/v1/responses"],
      );
      assert.deepEqual(
        stub.otherRequests.map((r) => `${r.method} ${r.path}`),
        ["POST /v1/responses/compact"],
      );
    } finally {
      await proxy.close();
    }
  });

  test("the operator can add an endpoint; a trailing /* matches below it", async () => {
    const proxy = await startProxy({ extraRoutes: ["GET /models", "post /chat/*"] });
    try {
      await read(
        await send(proxy.socketPath, { method: "GET", path: "/v1/models", headers: bearer(proxy.token), body: "" }),
      );
      await read(await send(proxy.socketPath, { path: "/v1/chat/completions", headers: bearer(proxy.token) }));
      assert.deepEqual(
        stub.otherRequests.map((r) => `${r.method} ${r.path}`),
        ["GET /v1/models", "POST /v1/chat/completions"],
      );
      assert.equal(
        (
          await read(
            await send(proxy.socketPath, {
              method: "GET",
              path: "/v1/chat/completions",
              headers: bearer(proxy.token),
              body: "",
            }),
          )
        ).status,
        403,
      );
      assert.equal(
        (await read(await send(proxy.socketPath, { path: "/v1/chat", headers: bearer(proxy.token) }))).status,
        403,
      );
    } finally {
      await proxy.close();
    }
  });

  test("only a fixed set of request headers is forwarded: tenant organisation, project, identity and hop-by-hop headers are not", async () => {
    const proxy = await startProxy();
    try {
      const headers = {
        ...bearer(proxy.token),
        connection: "keep-alive, x-hop",
        "x-hop": "1",
        "proxy-authorization": "Basic abc",
        "accept-encoding": "gzip, br",
        "openai-organization": "org-tenant",
        "openai-project": "proj_tenant",
        "openai-beta": "assistants=v2",
        "x-forwarded-for": "10.0.0.1",
        forwarded: "for=10.0.0.1",
        cookie: "a=b",
        "x-api-key": "sk-other",
        "api-key": "sk-other",
        "x-kept": "yes",
        "user-agent": "codex_sdk_ts/0.163.0",
        originator: "codex_sdk_ts",
        "session-id": "s-1",
        "thread-id": "th-1",
        "x-client-request-id": "r-1",
        "x-codex-turn-metadata": "{}",
        "x-codex-window-id": "w:0",
        "x-codex-beta-features": "remote_compaction_v2",
        accept: "text/event-stream",
      };
      await read(await send(proxy.socketPath, { headers }));
      const seen = stub.requests[0]?.headers ?? {};
      for (const dropped of [
        "x-kept",
        "x-hop",
        "proxy-authorization",
        "openai-organization",
        "openai-project",
        "openai-beta",
        "x-forwarded-for",
        "forwarded",
        "cookie",
        "x-api-key",
        "api-key",
      ]) {
        assert.equal(seen[dropped], undefined, dropped);
      }
      for (const kept of [
        "user-agent",
        "originator",
        "session-id",
        "thread-id",
        "x-client-request-id",
        "x-codex-turn-metadata",
        "x-codex-window-id",
        "x-codex-beta-features",
        "accept",
        "content-type",
      ]) {
        assert.equal(seen[kept], headers[kept as keyof typeof headers] ?? "application/json", kept);
      }
      assert.equal(seen["accept-encoding"], "identity");
      assert.equal(seen.authorization, `Bearer ${REAL_KEY}`);
    } finally {
      await proxy.close();
    }
  });

  test("organisation and project come from the operator only, replacing the tenant's", async () => {
    const proxy = await startProxy({ organization: "org-operator", project: "proj_operator" });
    try {
      await read(
        await send(proxy.socketPath, {
          headers: { ...bearer(proxy.token), "openai-organization": "org-tenant", "openai-project": "proj_tenant" },
        }),
      );
      const seen = stub.requests[0]?.headers ?? {};
      assert.equal(seen["openai-organization"], "org-operator");
      assert.equal(seen["openai-project"], "proj_operator");
    } finally {
      await proxy.close();
    }
  });

  test("the upstream's organisation, project and cookies do not reach the client", async () => {
    const upstream = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, {
        "content-type": "application/json",
        "openai-organization": "org-secret",
        "openai-project": "proj_secret",
        "set-cookie": "a=b",
        "x-request-id": "req_1",
      });
      res.end(JSON.stringify({ id: "resp_1" }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const proxy = await startProxy({
      upstreamBaseUrl: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/v1`,
    });
    try {
      const reply = await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }));
      assert.equal(reply.status, 200);
      assert.equal(reply.headers["x-request-id"], "req_1");
      for (const name of ["openai-organization", "openai-project", "set-cookie"])
        assert.equal(reply.headers[name], undefined, name);
    } finally {
      await proxy.close();
      await new Promise<void>((resolve) => upstream.close(() => resolve()));
    }
  });

  test("a JSON response's usage counts too; upstream errors pass through unchanged", async () => {
    const proxy = await startProxy();
    try {
      stub.script(
        {
          kind: "http",
          status: 200,
          body: { id: "resp_1", usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 } },
        },
        {
          kind: "http",
          status: 400,
          body: { error: { message: "bad input", type: "invalid_request_error", code: null } },
        },
      );
      assert.equal((await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }))).status, 200);
      const failed = await read(await send(proxy.socketPath, { headers: bearer(proxy.token) }));
      assert.equal(failed.status, 400);
      assert.equal((JSON.parse(failed.body) as { error: { message: string } }).error.message, "bad input");
      assert.deepEqual(proxy.usages, [
        [REF, { inputTokens: 7, cachedTokens: 0, outputTokens: 3, reasoningTokens: 0, totalTokens: 10 }],
      ]);
      assert.deepEqual(proxy.failures, []);
    } finally {
      await proxy.close();
    }
  });
});
