/** The late-bound turns (src/turns/turns-port.ts): what the proxies and metrics hold before the turns are built, and the model proxy's hooks into them. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createLogger } from "../../src/log.js";
import { LateTurns, modelProxyTurnHooks, type TurnsPort } from "../../src/turns/turns-port.js";

const usage = { inputTokens: 10, cachedTokens: 0, outputTokens: 5, reasoningTokens: 0, totalTokens: 15 };
const refusal = { status: 429, code: "budget_exceeded", message: "spent" };

/** Turns that record what they were asked. */
function recordingTurns(calls: string[]): TurnsPort {
  return {
    running: 2,
    detached: 1,
    fail: (turnId, code, message) => void calls.push(`fail ${turnId} ${code} ${message}`),
    recordModelUsage: (turnId, given) => (calls.push(`usage ${turnId} ${given.totalTokens}`), turnId === "t1"),
    admitModelRequest: (turnId) => (calls.push(`admit ${turnId}`), refusal),
  };
}

describe("late-bound turns", () => {
  test("used before they are bound, each use throws naming what was asked", () => {
    const late = new LateTurns();
    const before = /the turns were asked for (\w+) before they were built/;
    for (const [use, call] of [
      ["running", () => late.running],
      ["detached", () => late.detached],
      ["fail", () => late.fail("t1", "model_unreachable", "down")],
      ["recordModelUsage", () => late.recordModelUsage("t1", usage)],
      ["admitModelRequest", () => late.admitModelRequest("t1")],
    ] as const) {
      assert.throws(call, (e: Error) => before.exec(e.message)?.[1] === use, use);
    }
  });

  test("once bound, every use reaches the turns, with its answer", () => {
    const late = new LateTurns();
    const calls: string[] = [];
    late.bind(recordingTurns(calls));
    assert.equal(late.running, 2);
    assert.equal(late.detached, 1);
    late.fail("t1", "model_unreachable", "down");
    assert.equal(late.recordModelUsage("t1", usage), true);
    assert.equal(late.recordModelUsage("t2", usage), false);
    assert.deepEqual(late.admitModelRequest("t1"), refusal);
    assert.deepEqual(calls, ["fail t1 model_unreachable down", "usage t1 15", "usage t2 15", "admit t1"]);
  });

  test("bound once: a second bind throws and the first turns stay", () => {
    const late = new LateTurns();
    late.bind(recordingTurns([]));
    assert.throws(() => late.bind({ ...recordingTurns([]), running: 9 }), /bound already/);
    assert.equal(late.running, 2);
  });
});

describe("the model proxy's hooks into the turns", () => {
  test("an unreachable model API fails the turn; usage is counted, and usage after its turn ended is logged as late", () => {
    const calls: string[] = [];
    const logged: string[] = [];
    const log = createLogger({ level: "info", write: (line) => void logged.push(line) });
    const metrics = {
      countProxyError: (code: string) => void calls.push(`error ${code}`),
      countTokens: () => void calls.push("tokens"),
      countLateTokens: (total: number) => void calls.push(`late ${total}`),
    };
    const hooks = modelProxyTurnHooks(recordingTurns(calls), log, metrics);
    const failure = { code: "model_unreachable", status: 502, message: "down" } as const;
    hooks.onModelUnreachable({ workspaceId: "ws", turnId: "t1" }, failure);
    hooks.onUsage({ workspaceId: "ws", turnId: "t1" }, usage);
    hooks.onUsage({ workspaceId: "ws", turnId: "t2" }, usage);
    assert.deepEqual(hooks.admit({ workspaceId: "ws", turnId: "t1" }), refusal);
    assert.deepEqual(calls, [
      "error model_unreachable",
      "fail t1 model_unreachable down",
      "tokens",
      "usage t1 15",
      "tokens",
      "usage t2 15",
      "late 15",
      "admit t1",
    ]);
    assert.equal(logged.length, 1);
    assert.match(logged[0] as string, /model usage arrived after its turn ended/);
    assert.match(logged[0] as string, /"turnId":"t2"/);
  });
});
