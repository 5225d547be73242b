import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { performance } from "node:perf_hooks";

import {
  ResponsesStub,
  functionCallOutput,
  inputMessages,
  lastUserMessageText,
  type RecordedRequest,
  type StubEvent,
} from "../support/responses-stub.js";
import { deadline, waitFor, withTimeout } from "../support/wait.js";

interface Sse {
  status: number;
  contentType: string | null;
  events: StubEvent[];
}

function parseSse(text: string): StubEvent[] {
  return text
    .split("\n\n")
    .filter((frame) => frame.trim() !== "")
    .map((frame) => {
      const lines = frame.split("\n");
      const name = lines.find((l) => l.startsWith("event: "))?.slice(7);
      const data = JSON.parse(lines.find((l) => l.startsWith("data: "))?.slice(6) ?? "null") as StubEvent;
      assert.equal(name, data.type, "event name matches the data's type");
      return data;
    });
}

async function post(stub: ResponsesStub, body: unknown, path = "/v1/responses", signal?: AbortSignal): Promise<Sse> {
  const res = await fetch(`http://127.0.0.1:${stub.port}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-unit" },
    body: JSON.stringify(body),
    signal,
  });
  return { status: res.status, contentType: res.headers.get("content-type"), events: parseSse(await res.text()) };
}

const prompt = (text: string) => ({
  model: "gpt-5.5",
  input: [{ type: "message", role: "user", content: [{ type: "input_text", text }] }],
});

describe("ResponsesStub", () => {
  let stub: ResponsesStub;
  before(async () => {
    stub = await ResponsesStub.start();
  });
  after(() => stub.close());
  beforeEach(() => {
    stub.requests.length = 0;
    stub.otherRequests.length = 0;
    stub.respondWith(undefined);
  });

  it("exposes a /v1 base URL on loopback", () => {
    assert.match(stub.baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    assert.ok(stub.port > 0);
  });

  it("answers a message step with created, output item and completed (with usage), and records the request", async () => {
    stub.script({
      kind: "message",
      text: "hello there",
      usage: { input_tokens: 100, cached_tokens: 40, output_tokens: 7, reasoning_tokens: 3 },
    });
    const res = await post(stub, prompt("hi"));
    assert.equal(res.status, 200);
    assert.equal(res.contentType, "text/event-stream");
    assert.deepEqual(
      res.events.map((e) => e.type),
      ["response.created", "response.output_item.done", "response.completed"],
    );
    const item = res.events[1]?.item as Record<string, unknown>;
    assert.equal(item.type, "message");
    assert.equal(item.role, "assistant");
    assert.equal(typeof item.id, "string");
    assert.deepEqual(item.content, [{ type: "output_text", text: "hello there" }]);
    const response = res.events[2]?.response as { id: string; usage: unknown };
    assert.equal(response.id, (res.events[0]?.response as { id: string }).id);
    assert.deepEqual(response.usage, {
      input_tokens: 100,
      input_tokens_details: { cached_tokens: 40 },
      output_tokens: 7,
      output_tokens_details: { reasoning_tokens: 3 },
      total_tokens: 107,
    });

    assert.equal(stub.requests.length, 1);
    const recorded = stub.requests[0] as RecordedRequest;
    assert.equal(recorded.path, "/v1/responses");
    assert.equal(recorded.headers.authorization, "Bearer sk-unit");
    assert.equal(recorded.body.model, "gpt-5.5");
    assert.equal(recorded.step.kind, "message");
    assert.equal(lastUserMessageText(recorded), "hi");
  });

  it("consumes steps in order, then answers the default message 'ok'", async () => {
    stub.script({ kind: "message", text: "one" }, { kind: "message", text: "two" });
    assert.equal(stub.pending, 2);
    const texts: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await post(stub, prompt(`n${i}`));
      texts.push((res.events[1]?.item as { content: Array<{ text: string }> }).content[0]?.text);
    }
    assert.deepEqual(texts, ["one", "two", "ok"]);
    assert.equal(stub.pending, 0);
  });

  it("accepts POST …/responses under any base path and ignores the query", async () => {
    stub.script({ kind: "message", text: "prefixed" });
    const res = await post(stub, prompt("x"), "/api/openai/v9/responses?stream=1");
    assert.equal(res.status, 200);
    assert.equal(stub.requests[0]?.path, "/api/openai/v9/responses");
  });

  it("lets a responder choose the step when the queue is empty", async () => {
    stub.respondWith((req) => ({ kind: "message", text: `echo:${lastUserMessageText(req as RecordedRequest)}` }));
    const res = await post(stub, prompt("ping"));
    assert.deepEqual((res.events[1]?.item as { content: unknown }).content, [
      { type: "output_text", text: "echo:ping" },
    ]);
  });

  it("scripts an exec_command function call with JSON arguments", async () => {
    stub.script({ kind: "command", cmd: "echo hi > f.txt", callId: "call_1" });
    const res = await post(stub, prompt("run"));
    assert.deepEqual(
      res.events.map((e) => e.type),
      ["response.created", "response.output_item.done", "response.completed"],
    );
    const item = res.events[1]?.item as Record<string, unknown>;
    assert.equal(item.type, "function_call");
    assert.equal(item.name, "exec_command");
    assert.equal(item.call_id, "call_1");
    assert.equal(typeof item.id, "string");
    assert.deepEqual(JSON.parse(item.arguments as string), { cmd: "echo hi > f.txt" });
  });

  it("scripts an MCP tool call with a namespace and a generated call id", async () => {
    stub.script({ kind: "tool", namespace: "mcp__alive", name: "search", arguments: { q: "x" } });
    const res = await post(stub, prompt("tool"));
    const item = res.events[1]?.item as Record<string, unknown>;
    assert.equal(item.namespace, "mcp__alive");
    assert.equal(item.name, "search");
    assert.match(String(item.call_id), /^call_/);
    assert.deepEqual(JSON.parse(item.arguments as string), { q: "x" });
  });

  it("scripts response.failed with an error code", async () => {
    stub.script({ kind: "fail", code: "insufficient_quota", message: "no money" });
    const res = await post(stub, prompt("x"));
    assert.deepEqual(
      res.events.map((e) => e.type),
      ["response.created", "response.failed"],
    );
    assert.deepEqual((res.events[1]?.response as { error: unknown }).error, {
      code: "insufficient_quota",
      message: "no money",
    });
  });

  it("sends raw events as given and plain HTTP errors", async () => {
    stub.script(
      { kind: "events", events: [{ type: "response.created", response: { id: "r" } }] },
      { kind: "http", status: 400 },
    );
    assert.deepEqual((await post(stub, prompt("a"))).events, [{ type: "response.created", response: { id: "r" } }]);
    const res = await fetch(`http://127.0.0.1:${stub.port}/v1/responses`, { method: "POST", body: "{}" });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { type: string } }).error.type, "stub_error");
  });

  it("delays everything after response.created for a slow step", async () => {
    stub.script({ kind: "message", text: "slow", delayMs: 300 });
    const start = performance.now();
    const res = await fetch(`http://127.0.0.1:${stub.port}/v1/responses`, { method: "POST", body: "{}" });
    assert.equal(res.status, 200, "headers come before the delay");
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    let createdAt = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (createdAt === 0 && text.includes("response.created")) createdAt = performance.now();
    }
    const endedAt = performance.now();
    assert.deepEqual(
      parseSse(text).map((e) => e.type),
      ["response.created", "response.output_item.done", "response.completed"],
    );
    assert.ok(endedAt - start >= 250, `stream took ${endedAt - start}ms`);
    assert.ok(endedAt - createdAt >= 200, `created came ${endedAt - createdAt}ms before the end`);
  });

  it("answers GET /v1/responses with 426, a WebSocket upgrade with 426 and other paths with 404", async () => {
    assert.equal((await fetch(`http://127.0.0.1:${stub.port}/v1/responses`)).status, 426);
    assert.equal((await fetch(`http://127.0.0.1:${stub.port}/v1/models`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${stub.port}/v1/other`, { method: "POST", body: "{}" })).status, 404);
    const upgradeStatus = await new Promise<number | undefined>((resolve, reject) => {
      const req = httpRequest({
        host: "127.0.0.1",
        port: stub.port,
        path: "/v1/responses",
        headers: {
          connection: "Upgrade",
          upgrade: "websocket",
          "sec-websocket-version": "13",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on("upgrade", () => reject(new Error("unexpected upgrade")));
      req.on("error", reject);
      req.end();
    });
    assert.equal(upgradeStatus, 426);
    assert.equal(stub.requests.length, 0);
    assert.deepEqual(
      stub.otherRequests.map((r) => `${r.method} ${r.path}`),
      ["GET /v1/responses", "GET /v1/models", "POST /v1/other", "GET /v1/responses"],
    );
  });

  it("times out waitForRequests with a message naming the count", async () => {
    await assert.rejects(stub.waitForRequests(1, 50), /timed out after 50ms waiting for 1 request/);
  });
});

describe("ResponsesStub hang step", () => {
  it("records the request, never answers, and close() destroys the hung socket", async () => {
    const stub = await ResponsesStub.start();
    stub.script({ kind: "hang" });
    const answered = post(stub, prompt("wait forever"));
    answered.catch(() => undefined);
    const requests = await stub.waitForRequests(1, 5_000);
    assert.equal(lastUserMessageText(requests[0] as RecordedRequest), "wait forever");
    // Nothing comes back while the stub holds the request: waiting for an answer times out.
    await assert.rejects(withTimeout(answered, 200, "hung answer"), /timed out after 200ms/);
    await stub.close();
    await assert.rejects(
      withTimeout(answered, 5_000, "connection reset"),
      (error: Error) => !/timed out/.test(error.message),
    );
  });

  it("fails pending waits on close", async () => {
    const stub = await ResponsesStub.start();
    const pending = stub.waitForRequests(1, 10_000);
    await stub.close();
    await assert.rejects(pending, /closed/);
  });
});

describe("request readers", () => {
  const recorded = (input: unknown[]): RecordedRequest => ({
    path: "/v1/responses",
    headers: {},
    body: { input },
    receivedAt: 0,
    step: { kind: "hang" },
  });

  it("find function_call_output text by call id or the last one, string or content parts", () => {
    const req = recorded([
      { type: "message", role: "user", content: [{ type: "input_text", text: "do it" }] },
      { type: "function_call", call_id: "a", name: "exec_command", arguments: "{}" },
      { type: "function_call_output", call_id: "a", output: "first" },
      {
        type: "function_call_output",
        call_id: "b",
        output: [
          { type: "input_text", text: "sec" },
          { type: "input_text", text: "ond" },
        ],
      },
    ]);
    assert.equal(functionCallOutput(req, "a"), "first");
    assert.equal(functionCallOutput(req), "second");
    assert.equal(functionCallOutput(req, "zzz"), undefined);
    assert.equal(functionCallOutput(recorded([])), undefined);
  });

  it("list messages and pick the last user message", () => {
    const req = recorded([
      { type: "message", role: "developer", content: [{ type: "input_text", text: "rules" }] },
      { type: "message", role: "user", content: [{ type: "input_text", text: "first" }] },
      { type: "message", role: "assistant", content: [{ type: "output_text", text: "reply" }] },
      { type: "message", role: "user", content: [{ type: "input_text", text: "second" }] },
      { type: "function_call_output", call_id: "a", output: "x" },
    ]);
    assert.deepEqual(inputMessages(req), [
      { role: "developer", text: "rules" },
      { role: "user", text: "first" },
      { role: "assistant", text: "reply" },
      { role: "user", text: "second" },
    ]);
    assert.equal(lastUserMessageText(req), "second");
    assert.equal(lastUserMessageText(recorded([])), undefined);
    assert.equal(lastUserMessageText({ ...req, body: undefined }), undefined);
  });
});

describe("wait helpers", () => {
  it("waitFor resolves with the first truthy probe value", async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { intervalMs: 1 });
    assert.deepEqual(value, { calls: 3 });
  });

  it("waitFor times out naming what it waited for, with the last probe error as cause", async () => {
    await assert.rejects(
      waitFor(
        () => {
          throw new Error("not yet");
        },
        { timeoutMs: 30, intervalMs: 5, what: "the moon" },
      ),
      (error: Error) =>
        error.message === "timed out after 30ms waiting for the moon" && (error.cause as Error).message === "not yet",
    );
  });

  it("withTimeout passes a result through and clears its timer", async () => {
    assert.equal(await withTimeout(Promise.resolve(42), 10_000, "answer"), 42);
  });

  it("deadline counts down and aborts its signal", async () => {
    const d = deadline(20);
    assert.ok(d.remaining() <= 20);
    await waitFor(() => d.signal.aborted, { timeoutMs: 2_000, intervalMs: 5, what: "deadline signal" });
    assert.ok(d.expired());
    assert.equal(d.remaining(), 0);
  });
});
