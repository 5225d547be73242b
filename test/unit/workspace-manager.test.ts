/**
 * The workspace manager's own logic over an in-memory engine (test/support/fake-engine.ts): one
 * container per workspace however many ensures race, a stale spec replaced, containers adopted after
 * a restart, the idle pause and stop, and an ensure that meets a pause in flight. What the engine
 * itself does with these calls is tested against the real one (test/integration/workspace.test.ts,
 * pause.test.ts, restart.test.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { createLogger } from "../../src/log.js";
import type { WorkspaceParams } from "../../src/service.js";
import { WorkspaceManager, type WorkspaceManagerOptions } from "../../src/workspace/manager.js";
import { WorkspaceRuntimes } from "../../src/workspace/runtimes.js";
import { FakeEngine } from "../support/fake-engine.js";
import { unitManagerOptions } from "../support/fake-workspaces.js";
import { waitFor, withTimeout } from "../support/wait.js";

const log = createLogger({ level: "error", write: () => undefined });

describe("workspace manager over an in-memory engine", () => {
  let stateDir: string;
  const managers: WorkspaceManager[] = [];
  // The caller's own ids: the host dirs are chowned to them, which needs no privilege.
  const { uid, gid } = os.userInfo();

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-manager-"));
  });
  after(async () => {
    for (const manager of managers) await manager.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  async function startManager(
    engine: FakeEngine,
    options: Partial<WorkspaceManagerOptions> = {},
  ): Promise<WorkspaceManager> {
    const manager = new WorkspaceManager(
      await unitManagerOptions(stateDir, log, {
        engine,
        runtimes: new WorkspaceRuntimes(engine, { defaultRuntime: null, allowed: ["runc", "runsc"] }),
        ...options,
      }),
    );
    managers.push(manager);
    await manager.start();
    return manager;
  }

  let next = 0;
  function workspace(extra: Partial<WorkspaceParams> = {}): WorkspaceParams {
    next += 1;
    const workspaceId = `ws-${next}`;
    // One user for all: a uid serves one user at a time.
    return {
      workspaceId,
      userId: "tenant",
      uid,
      gid,
      workspacePath: path.join(stateDir, "tenants", workspaceId),
      ...extra,
    };
  }

  test("concurrent ensures of one workspace make one container; one of them says it created it", async () => {
    const engine = new FakeEngine();
    const manager = await startManager(engine);
    const params = workspace();
    const results = await Promise.all(Array.from({ length: 5 }, () => manager.ensure(params)));
    assert.equal(engine.count("create"), 1);
    assert.equal(engine.containers.size, 1);
    assert.equal(new Set(results.map((r) => r.containerId)).size, 1);
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.ok(results.every((r) => r.state === "running" && r.isolation !== null));
    const warm = await manager.ensure(params);
    assert.equal(warm.created, false);
    assert.equal(engine.count("create"), 1, "a warm ensure makes nothing");
  });

  test("an ensure whose spec changed replaces the container; the old one is removed", async () => {
    const engine = new FakeEngine();
    const manager = await startManager(engine);
    const params = workspace();
    const first = await manager.ensure(params);
    const second = await manager.ensure({ ...params, resources: { memoryMb: 512 } });
    assert.notEqual(second.containerId, first.containerId);
    assert.equal(second.created, true);
    assert.deepEqual([...engine.containers.keys()], [second.containerId]);
    assert.equal(engine.containers.get(second.containerId)?.spec.HostConfig?.Memory, 512 * 1024 * 1024);
    assert.ok(
      engine.calls.indexOf(`remove ${first.containerId}`) <
        engine.calls.lastIndexOf(`create alive-codex-${params.workspaceId}`),
      engine.calls.join("\n"),
    );
    assert.equal(manager.get(params.workspaceId).containerId, second.containerId);
  });

  test("a new manager over the same engine adopts the containers (running and paused) and recreates nothing", async () => {
    const engine = new FakeEngine();
    const earlier = await startManager(engine);
    const running = workspace();
    const paused = workspace();
    const madeRunning = await earlier.ensure(running);
    const madePaused = await earlier.ensure(paused);
    await earlier.close();
    assert.equal(await engine.pause(madePaused.containerId), "paused");

    const manager = await startManager(engine);
    assert.equal(manager.find(running.workspaceId)?.state, "running");
    assert.equal(manager.find(paused.workspaceId)?.state, "paused");
    const again = await manager.ensure(running);
    const thawed = await manager.ensure(paused);
    assert.deepEqual([again.containerId, again.created], [madeRunning.containerId, false]);
    assert.deepEqual([thawed.containerId, thawed.created], [madePaused.containerId, false]);
    assert.equal(engine.containers.get(madePaused.containerId)?.state, "running");
    assert.equal(engine.count("create"), 2, "nothing made after the restart");
    assert.equal(engine.count("remove"), 0);
  });

  test("engine events keep the records current: a container stopped behind the manager's back is started, a removed one forgotten", async () => {
    const engine = new FakeEngine();
    const manager = await startManager(engine);
    const params = workspace();
    const made = await manager.ensure(params);
    await engine.stop(made.containerId);
    await waitFor(() => manager.find(params.workspaceId)?.state === "exited", {
      timeoutMs: 2000,
      what: "the die event",
    });
    const again = await manager.ensure(params);
    assert.deepEqual([again.containerId, again.created], [made.containerId, false]);
    assert.equal(engine.containers.get(made.containerId)?.state, "running");
    await engine.remove(made.containerId);
    await waitFor(() => manager.find(params.workspaceId) === undefined, { timeoutMs: 2000, what: "the destroy event" });
    const fresh = await manager.ensure(params);
    assert.equal(fresh.created, true);
    assert.equal(engine.count("create"), 2);
  });

  test(
    "an idle workspace is paused, then stopped; the next ensure starts the same container",
    { timeout: 10_000 },
    async () => {
      const engine = new FakeEngine();
      const manager = await startManager(engine, { idleTimeoutMs: 20, stopTimeoutMs: 20 });
      const params = workspace();
      const made = await manager.ensure(params);
      await waitFor(() => manager.find(params.workspaceId)?.state === "paused", {
        timeoutMs: 5000,
        what: "the idle pause",
      });
      await waitFor(() => manager.find(params.workspaceId)?.state === "exited", {
        timeoutMs: 5000,
        what: "the stop after the pause",
      });
      assert.equal(engine.containers.get(made.containerId)?.state, "exited");
      const again = await manager.ensure(params);
      assert.deepEqual([again.containerId, again.created, again.state], [made.containerId, false, "running"]);
      assert.equal(engine.containers.get(made.containerId)?.state, "running");
      assert.equal(engine.count("create"), 1);
    },
  );

  test(
    "under a runtime that cannot be paused (runsc) an idle workspace is stopped instead",
    { timeout: 10_000 },
    async () => {
      const engine = new FakeEngine();
      const manager = await startManager(engine, { idleTimeoutMs: 20, stopTimeoutMs: 60_000 });
      const params = workspace({ runtime: "runsc" });
      const made = await manager.ensure(params);
      await waitFor(() => manager.find(params.workspaceId)?.state === "exited", {
        timeoutMs: 5000,
        what: "the idle stop",
      });
      assert.equal(engine.count("pause"), 0);
      assert.equal(engine.containers.get(made.containerId)?.spec.HostConfig?.Runtime, "runsc");
    },
  );

  test(
    "an ensure that arrives while the idle pause is in flight waits for it, then thaws the container",
    { timeout: 10_000 },
    async () => {
      const engine = new FakeEngine();
      const manager = await startManager(engine, { idleTimeoutMs: 20 });
      const params = workspace();
      const made = await manager.ensure(params);
      const pause = engine.hold("pause");
      await withTimeout(pause.reached, 5000, "the idle pause");
      let settled = false;
      const again = manager.ensure(params).then((result) => ((settled = true), result));
      await delay(50);
      assert.equal(settled, false, "the ensure waits for the pause in flight");
      assert.equal(engine.count("unpause"), 0);
      pause.release();
      const result = await again;
      assert.deepEqual([result.containerId, result.created, result.state], [made.containerId, false, "running"]);
      assert.equal(engine.containers.get(made.containerId)?.state, "running");
      assert.ok(
        engine.calls.indexOf(`pause alive-codex-${params.workspaceId}`) <
          engine.calls.indexOf(`unpause alive-codex-${params.workspaceId}`),
        engine.calls.join("\n"),
      );
      assert.equal(engine.count("create"), 1);
    },
  );
});
