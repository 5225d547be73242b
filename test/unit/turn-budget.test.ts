import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { NO_BUDGET_LIMITS, resolveTurnBudget } from "../../src/turns/turn-budget.js";
import { TurnMeter } from "../../src/turns/turn-meter.js";
import { parseRunTurnParams } from "../../src/rpc/params.js";
import type { WorkspacePolicy } from "../../src/policy/workspace-policy.js";
import { waitFor } from "../support/wait.js";

const POLICY = {} as WorkspacePolicy;
const usage = (input: number, output: number) => ({
  inputTokens: input,
  cachedTokens: 1,
  outputTokens: output,
  reasoningTokens: 2,
  totalTokens: input + output,
});

describe("turn budgets", () => {
  test("options.budget is validated at the edge, naming the field", async () => {
    const parsed = await parseRunTurnParams(
      { workspaceId: "ws", input: "x", options: { budget: { tokens: 5000, cpuSeconds: 1.5 } } },
      POLICY,
    );
    assert.deepEqual(parsed.options?.budget, { tokens: 5000, cpuSeconds: 1.5 });
    for (const [budget, field] of [
      [{ tokens: 0 }, "options.budget.tokens"],
      [{ tokens: 1.5 }, "options.budget.tokens"],
      [{ cpuSeconds: "1" }, "options.budget.cpuSeconds"],
      [{ cpuSeconds: -1 }, "options.budget.cpuSeconds"],
      ["lots", "options.budget"],
    ] as const) {
      await assert.rejects(
        parseRunTurnParams({ workspaceId: "ws", input: "x", options: { budget } }, POLICY),
        (e: SidecarError) => e.code === ErrorCode.invalidParams && e.data?.field === field,
      );
    }
  });

  test("a requested budget wins, else the default, else the ceiling; above the ceiling is -32006", () => {
    assert.deepEqual(resolveTurnBudget(undefined, NO_BUDGET_LIMITS), { tokens: null, cpuSeconds: null });
    const limits = { defaultTokens: 1000, maxTokens: 5000, defaultCpuSeconds: null, maxCpuSeconds: 60 };
    assert.deepEqual(resolveTurnBudget(undefined, limits), { tokens: 1000, cpuSeconds: 60 });
    assert.deepEqual(resolveTurnBudget({ tokens: 4000, cpuSeconds: 2 }, limits), { tokens: 4000, cpuSeconds: 2 });
    assert.throws(
      () => resolveTurnBudget({ tokens: 5001 }, limits),
      (e: SidecarError) =>
        e.code === ErrorCode.notAllowed &&
        e.data?.field === "options.budget.tokens" &&
        /ALIVE_CODEX_BUDGET_TOKENS_MAX/.test(String(e.data?.reason)),
    );
  });
});

describe("turn meter", () => {
  const roots: string[] = [];
  afterEach(async () => {
    await Promise.all(roots.splice(0).map((root) => fs.rm(root, { recursive: true, force: true })));
  });

  test("sums exact token usage; crossing the token budget reports once and refuses the next request", async () => {
    const exceeded: string[] = [];
    const meter = new TurnMeter({
      containerId: "none",
      budget: { tokens: 100, cpuSeconds: null },
      onExceeded: (m) => exceeded.push(m),
      cgroupRoot: "/nonexistent",
    });
    await meter.start();
    meter.addUsage(usage(40, 10));
    assert.equal(meter.admit(), null);
    meter.addUsage(usage(40, 11));
    assert.deepEqual(meter.tokens, { input: 80, cached: 2, output: 21, reasoning: 4 });
    assert.equal(exceeded.length, 1);
    assert.equal(meter.admit()?.code, "budget_exceeded");
    assert.equal(exceeded.length, 1, "reported once");
    assert.deepEqual(
      await meter.finish().then((r) => [r.cpuSeconds, r.peakMemoryBytes]),
      [null, null],
      "no cgroup: null figures",
    );
  });

  test("CPU is the cgroup's delta over the turn; crossing the CPU budget is noticed by the poll", async () => {
    const id = "abc";
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "meter-test-"));
    roots.push(root);
    const cpu = path.join(root, "cpuacct/docker", id, "cpuacct.usage");
    const memory = path.join(root, "memory/docker", id);
    await fs.mkdir(path.dirname(cpu), { recursive: true });
    await fs.mkdir(memory, { recursive: true });
    await fs.writeFile(cpu, "10000000000");
    await fs.writeFile(path.join(memory, "memory.usage_in_bytes"), "100");
    await fs.writeFile(path.join(memory, "memory.max_usage_in_bytes"), "999999");
    const exceeded: string[] = [];
    const meter = new TurnMeter({
      containerId: id,
      budget: { tokens: null, cpuSeconds: 1 },
      onExceeded: (m) => exceeded.push(m),
      cgroupRoot: root,
      pollMs: 10,
    });
    await meter.start();
    await fs.writeFile(path.join(memory, "memory.max_usage_in_bytes"), "5000");
    await fs.writeFile(cpu, "10500000000");
    await fs.writeFile(cpu, "12000000000");
    await waitFor(() => exceeded.length > 0, { timeoutMs: 10_000, what: "the CPU budget to be crossed" });
    assert.match(exceeded[0]!, /CPU seconds/);
    const resources = await meter.finish();
    assert.equal(resources.cpuSeconds, 2);
    assert.equal(resources.peakMemoryBytes, 5000, "the peak since the reset at the turn's start");
  });
});
