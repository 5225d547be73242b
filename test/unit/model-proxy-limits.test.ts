/**
 * What one tenant may hold of the model API: concurrent upstream requests per turn, a request rate
 * per workspace, and a token budget that holds against parallel requests. Against a fake upstream
 * on 127.0.0.1 that answers each request with 15 tokens.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { TurnMeter } from "../../src/turns/turn-meter.js";
import { ConcurrencySlots, RateLimiter } from "../../src/model-proxy/limits.js";
import { createModelProxy, type ModelProxyOptions } from "../../src/model-proxy/server.js";

const TOKEN = "alive-turn-limits-test";
type Ref = { workspaceId: string; turnId: string };
const USAGE = {
  input_tokens: 10,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: 5,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 15,
};

let dir: string;
let upstream: http.Server;
let upstreamUrl: string;
let received = 0;
let inFlight = 0;
let maxInFlight = 0;
let proxies = 0;
/** How long the fake upstream takes to complete each response. */
let delayMs = 30;

async function startProxy(
  ref: Ref,
  extra: Partial<ModelProxyOptions<Ref>>,
): Promise<{ socketPath: string; close(): Promise<void> }> {
  const server = createModelProxy<Ref>({
    upstreamBaseUrl: upstreamUrl,
    apiKey: "sk-real",
    authorize: (token) => (token === TOKEN ? ref : null),
    turnKey: (r) => r.turnId,
    workspaceKey: (r) => r.workspaceId,
    ...extra,
  });
  const socketPath = path.join(dir, `limits-${++proxies}.sock`);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      return closed;
    },
  };
}

function post(
  socketPath: string,
): Promise<{ status: number; refused: string | undefined; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath,
      path: "/v1/responses",
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      agent: false,
    });
    req.on("error", reject);
    req.on("response", async (res: IncomingMessage) => {
      let body = "";
      for await (const chunk of res) body += String(chunk);
      const refused = res.headers["x-alive-model-refused"];
      const retryAfter = res.headers["retry-after"];
      resolve({
        status: res.statusCode ?? 0,
        refused: typeof refused === "string" ? refused : undefined,
        retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
        body,
      });
    });
    req.end(JSON.stringify({ model: "gpt-5.5", stream: true, input: "hi" }));
  });
}

describe("model proxy limits", () => {
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "model-proxy-limits-"));
    // Each request: headers at once, the completed event (15 tokens) after 30 ms.
    upstream = http.createServer((req: IncomingMessage, res: ServerResponse) => {
      received++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      req.resume();
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('event: response.created\ndata: {"type":"response.created"}\n\n');
      setTimeout(() => {
        inFlight--;
        res.end(
          `event: response.completed\ndata: ${JSON.stringify({ type: "response.completed", response: { usage: USAGE } })}\n\n`,
        );
      }, delayMs);
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  });
  after(async () => {
    upstream.closeAllConnections();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("a token budget of 120 holds against 20 parallel requests of 15 tokens each: at most 9 reach the upstream", async () => {
    received = 0;
    maxInFlight = 0;
    const ref = { workspaceId: "w1", turnId: "t-budget" };
    const exceeded: string[] = [];
    const meter = new TurnMeter({
      containerId: "none",
      budget: { tokens: 120, cpuSeconds: null },
      onExceeded: (message) => exceeded.push(message),
    });
    const proxy = await startProxy(ref, {
      admit: () => meter.admit(),
      onUsage: (_ref, usage) => meter.addUsage(usage),
    });
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, () => post(proxy.socketPath)));
      const forwarded = replies.filter((r) => r.status === 200).length;
      assert.ok(received <= 9, `${received} requests reached the upstream`);
      assert.ok(received >= 8, `the budget was used: ${received} requests reached the upstream`);
      assert.equal(forwarded, received);
      assert.ok(maxInFlight <= 2, `at most 2 at once upstream (saw ${maxInFlight})`);
      for (const reply of replies.filter((r) => r.status !== 200)) {
        assert.equal(reply.status, 429);
        assert.equal(reply.refused, "budget_exceeded");
      }
      assert.ok(
        meter.tokens.input + meter.tokens.output <= 135,
        "overshoot by at most one response in flight beside the last admitted",
      );
      assert.ok(exceeded.length >= 1);
    } finally {
      await proxy.close();
    }
  });

  test("a turn's requests beyond the concurrency cap wait in line; past the line, 429 concurrency", async () => {
    received = 0;
    maxInFlight = 0;
    const proxy = await startProxy(
      { workspaceId: "w2", turnId: "t-queue" },
      { concurrencyPerTurn: 2, queuePerTurn: 3 },
    );
    delayMs = 300;
    try {
      const replies = await Promise.all(Array.from({ length: 8 }, () => post(proxy.socketPath)));
      assert.equal(replies.filter((r) => r.status === 200).length, 5, "2 in flight and 3 waiting are served");
      const refused = replies.filter((r) => r.status !== 200);
      assert.equal(refused.length, 3);
      for (const reply of refused) {
        assert.equal(reply.status, 429);
        assert.equal(reply.refused, "concurrency");
      }
      assert.equal(received, 5);
      assert.ok(maxInFlight <= 2);
    } finally {
      delayMs = 30;
      await proxy.close();
    }
  });

  test("past the workspace's rate, 429 rate_limited with retry-after, without reaching the upstream", async () => {
    received = 0;
    const proxy = await startProxy({ workspaceId: "w3", turnId: "t-rate" }, { ratePerMinute: 3 });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await post(proxy.socketPath)).status, 200);
      const limited = await post(proxy.socketPath);
      assert.equal(limited.status, 429);
      assert.equal(limited.refused, "rate_limited");
      assert.equal(limited.retryAfter, "20");
      assert.match(limited.body, /rate_limit_exceeded/);
      assert.match(limited.body, /Please try again in 20s/);
      assert.equal(received, 3);
    } finally {
      await proxy.close();
    }
  });
});

describe("ConcurrencySlots", () => {
  test("hands a freed slot to the first in line; an aborted wait leaves the line", async () => {
    const slots = new ConcurrencySlots(1, 2);
    const never = new AbortController().signal;
    const first = await slots.acquire("t", never);
    assert.ok(first);
    const leaving = new AbortController();
    const second = slots.acquire("t", leaving.signal);
    const third = slots.acquire("t", never);
    assert.equal(await slots.acquire("t", never), null, "the line is full");
    assert.ok(await slots.acquire("other", never), "another turn has its own slots");
    leaving.abort();
    assert.equal(await second, null);
    first();
    first();
    const got = await third;
    assert.ok(got);
    assert.equal(slots.inFlight("t"), 1);
    got();
    assert.equal(slots.inFlight("t"), 0);
  });
});

describe("RateLimiter", () => {
  test("allows a burst of perMinute, then refills evenly; 0 is no limit", () => {
    let now = 0;
    const limiter = new RateLimiter(60, () => now);
    for (let i = 0; i < 60; i++) assert.equal(limiter.take("w"), 0);
    assert.equal(limiter.take("w"), 1000);
    assert.equal(limiter.take("other"), 0);
    now += 1000;
    assert.equal(limiter.take("w"), 0);
    assert.equal(new RateLimiter(0).take("w"), 0);
  });
});
