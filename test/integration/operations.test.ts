/**
 * Operations: what a turn cost, budgets that stop it, and the metrics an operator scrapes.
 * The real codex binary against a scripted model on the test bridge, in real workspace containers.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { RunTurnParams, TurnResult, WorkspaceParams } from "../../src/service.js";
import { ResponsesStub, type ScriptStep } from "../support/responses-stub.js";
import { startGatewayStub, startTestSidecar, type TestSidecar } from "../support/sidecar.js";

/** A fixed amount of CPU work (about 1.5 CPU seconds on this machine), however loaded it is. */
const CPU_WORK = `awk 'BEGIN{for(i=0;i<80000000;i++)s+=i; print "worked"}'`;

describe("per-turn accounting and budgets", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  let ws: WorkspaceParams;
  before(async () => {
    stub = await startGatewayStub();
    t = await startTestSidecar({ stub, flags: { "--metrics-listen": "127.0.0.1:0" } });
    ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });
  beforeEach(() => stub.reset());

  const run = (params: Omit<RunTurnParams, "workspaceId">): Promise<TurnResult> =>
    t.sidecar.service.runTurn({ workspaceId: ws.workspaceId, ...params }, { onEvent: () => undefined });

  test("tokens are exactly what the model reported; resources and one log line per turn", async () => {
    stub.script(
      {
        kind: "command",
        cmd: "true",
        usage: { input_tokens: 120, cached_tokens: 40, output_tokens: 20, reasoning_tokens: 7 },
      },
      {
        kind: "message",
        text: "done",
        usage: { input_tokens: 300, cached_tokens: 150, output_tokens: 31, reasoning_tokens: 0 },
      },
    );
    const result = await run({ turnId: "turn-tokens", input: "count me" });
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    assert.deepEqual(result.tokens, { input: 420, cached: 190, output: 51, reasoning: 7 });
    assert.ok(result.turnUsage, "turnUsage is still there");
    assert.ok(result.resources.wallMs > 0);
    assert.ok(
      result.resources.cpuSeconds !== null && result.resources.cpuSeconds > 0,
      `cpuSeconds ${result.resources.cpuSeconds}`,
    );
    assert.ok(
      result.resources.peakMemoryBytes !== null && result.resources.peakMemoryBytes > 1024 * 1024,
      `peak ${result.resources.peakMemoryBytes}`,
    );
    const lines = t.logLines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === "turn finished" && line.turnId === "turn-tokens");
    assert.equal(lines.length, 1);
    assert.deepEqual(lines[0]?.tokens, result.tokens);
    assert.deepEqual(lines[0]?.resources, result.resources);
  });

  test("cpuSeconds grows with a CPU-bound command", async () => {
    stub.script({ kind: "command", cmd: "true" }, { kind: "message", text: "idle" });
    const idle = await run({ input: "do nothing" });
    stub.script({ kind: "command", cmd: CPU_WORK }, { kind: "message", text: "busy" });
    const busy = await run({ input: "work hard" });
    assert.equal(idle.status, "completed");
    assert.equal(busy.status, "completed");
    const [a, b] = [idle.resources.cpuSeconds ?? 0, busy.resources.cpuSeconds ?? 0];
    assert.ok(b - a > 0.8, `busy ${b} s vs idle ${a} s`);
  });

  test("a token budget stops a turn whose model keeps asking for tools: nothing is forwarded past it", async () => {
    const step: ScriptStep = {
      kind: "command",
      cmd: "echo again",
      usage: { input_tokens: 1000, cached_tokens: 0, output_tokens: 100, reasoning_tokens: 0 },
    };
    stub.respondWith(() => step);
    const result = await run({ input: "loop forever", options: { budget: { tokens: 2500 }, timeoutMs: 120_000 } });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "budget_exceeded");
    assert.match(result.error?.message ?? "", /tokens/);
    assert.deepEqual(result.tokens, { input: 3000, cached: 0, output: 300, reasoning: 0 }, "the accounting so far");
    assert.equal(stub.requests.length, 3, "the request after the crossing never reached the model");
    assert.ok(result.resources.cpuSeconds !== null);
  });

  test("a CPU budget stops a busy loop", async () => {
    stub.respondWith((request) =>
      JSON.stringify(request.body).includes("function_call_output")
        ? { kind: "message", text: "never" }
        : { kind: "command", cmd: "while :; do :; done" },
    );
    const started = Date.now();
    const result = await run({ input: "spin", options: { budget: { cpuSeconds: 1.5 }, timeoutMs: 180_000 } });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "budget_exceeded");
    assert.match(result.error?.message ?? "", /CPU seconds/);
    assert.ok((result.resources.cpuSeconds ?? 0) > 1.5, `cpuSeconds ${result.resources.cpuSeconds}`);
    assert.ok(Date.now() - started < 170_000, "stopped by the budget, not the deadline");
    stub.respondWith(undefined);
    stub.script({ kind: "message", text: "still fine" });
    assert.equal((await run({ input: "next" })).status, "completed", "the workspace takes the next turn");
  });

  test("after those turns /metrics shows the counters and histograms moved; closing the sidecar closes it", async () => {
    const address = t.sidecar.metricsAddress;
    assert.ok(address, "served on the listen address");
    const url = `http://${address.host}:${address.port}/metrics`;
    const text = await (await fetch(url)).text();
    const value = (pattern: string): number => {
      const match = new RegExp(`^${pattern.replace(/[{}]/g, "\\$&")} (\\S+)$`, "m").exec(text);
      assert.ok(match, `${pattern} in /metrics`);
      return Number(match[1]);
    };
    assert.ok(value('alive_codex_turns_total{status="completed",error_code=""}') >= 4);
    assert.equal(value('alive_codex_turns_total{status="failed",error_code="budget_exceeded"}'), 2);
    assert.ok(value('alive_codex_turn_duration_seconds_count{status="completed"}') >= 4);
    assert.ok(value("alive_codex_turn_first_event_seconds_count") >= 6);
    assert.ok(value("alive_codex_turn_cpu_seconds_total") > 1.5);
    assert.ok(value('alive_codex_workspace_ensure_duration_seconds_count{kind="cold"}') >= 1);
    assert.ok(value("alive_codex_model_requests_total") >= 11);
    assert.ok(value('alive_codex_model_tokens_total{kind="input"}') >= 3420);
    assert.ok(value('alive_codex_model_tokens_total{kind="cached"}') >= 190);
    assert.equal(value('alive_codex_workspaces{state="running"}'), 1);
    assert.equal(value("alive_codex_turns_running"), 0);
    assert.ok(value("alive_codex_process_resident_memory_bytes") > 0, "the process defaults");
    assert.doesNotMatch(text, new RegExp(ws.workspaceId), "no workspace id in any label");
    await t.stop();
    await assert.rejects(fetch(url), "the metrics server closed with the sidecar");
  });
});
