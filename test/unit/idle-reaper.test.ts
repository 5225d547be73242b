/** The idle reaper's decisions: pause after the idle timeout, stop after the stop timeout, never a busy workspace. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { idleAction, reapIdle, reaperInterval, type IdleAction } from "../../src/workspace/idle-reaper.js";
import type { WorkspaceRecord } from "../../src/workspace/record.js";
import { WorkspaceRegistry } from "../../src/workspace/registry.js";

const MIN = 60_000;
const timeouts = { idleTimeoutMs: 30 * MIN, stopTimeoutMs: 4 * 60 * MIN };
const now = 1_000_000_000;

function record(fields: Partial<WorkspaceRecord> & { workspaceId?: string }): WorkspaceRecord {
  const { workspaceId = "ws", ...rest } = fields;
  return {
    params: { workspaceId },
    state: "running",
    activeTurnId: null,
    lastActiveAt: now,
    pausedAt: null,
    ...rest,
  } as unknown as WorkspaceRecord;
}

describe("idle reaper", () => {
  test("a running workspace idle for the idle timeout is paused, not before", () => {
    assert.equal(idleAction(record({ lastActiveAt: now - 30 * MIN + 1 }), now, timeouts), null);
    assert.equal(idleAction(record({ lastActiveAt: now - 30 * MIN }), now, timeouts), "pause");
  });

  test("a paused workspace is stopped after the stop timeout counted from its pause", () => {
    const longIdle = now - 10 * 60 * MIN;
    assert.equal(
      idleAction(record({ state: "paused", lastActiveAt: longIdle, pausedAt: now - 4 * 60 * MIN + 1 }), now, timeouts),
      null,
    );
    assert.equal(
      idleAction(record({ state: "paused", lastActiveAt: longIdle, pausedAt: now - 4 * 60 * MIN }), now, timeouts),
      "stop",
    );
  });

  test("0 means never: no pause with idle 0, no stop with stop 0", () => {
    assert.equal(idleAction(record({ lastActiveAt: 0 }), now, { idleTimeoutMs: 0, stopTimeoutMs: MIN }), null);
    assert.equal(
      idleAction(record({ state: "paused", pausedAt: 0 }), now, { idleTimeoutMs: MIN, stopTimeoutMs: 0 }),
      null,
    );
  });

  test("a workspace running a turn, stopped or starting is left alone", () => {
    assert.equal(idleAction(record({ lastActiveAt: 0, activeTurnId: "t1" }), now, timeouts), null);
    assert.equal(idleAction(record({ state: "paused", pausedAt: 0, activeTurnId: "t1" }), now, timeouts), null);
    assert.equal(idleAction(record({ state: "exited", lastActiveAt: 0 }), now, timeouts), null);
    assert.equal(idleAction(record({ state: "created", lastActiveAt: 0 }), now, timeouts), null);
  });

  test("it looks every half of the shorter timeout, between 500 ms and 1 min; not at all with both 0", () => {
    assert.equal(reaperInterval({ idleTimeoutMs: 1000, stopTimeoutMs: 2000 }), 500);
    assert.equal(reaperInterval({ idleTimeoutMs: 0, stopTimeoutMs: 3000 }), 1500);
    assert.equal(reaperInterval(timeouts), 60_000);
    assert.equal(reaperInterval({ idleTimeoutMs: 0, stopTimeoutMs: 0 }), null);
  });

  test("a round skips a workspace with a transition in flight and one forgotten meanwhile", async () => {
    const registry = new WorkspaceRegistry("/state");
    const idle = record({ workspaceId: "idle", lastActiveAt: 0 });
    const ensuring = record({ workspaceId: "ensuring", lastActiveAt: 0 });
    const paused = record({ workspaceId: "paused", state: "paused", pausedAt: 0 });
    for (const r of [idle, ensuring, paused]) registry.add(r);
    const applied: [string, IdleAction][] = [];
    await reapIdle({
      ...timeouts,
      registry,
      busy: (workspaceId) => workspaceId === "ensuring",
      apply: async (r, action) => {
        applied.push([r.params.workspaceId, action]);
        // A removal while the first transition runs: the paused workspace is no longer the registry's.
        registry.delete("paused");
      },
    });
    assert.deepEqual(applied, [["idle", "pause"]]);
  });
});
