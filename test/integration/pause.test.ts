/**
 * Freeze before stop, against the real engine and the real codex: an idle workspace is paused (the
 * cgroup freezer), an ensure or a turn thaws it — the same processes carry on: the launcher started
 * before the pause, the log pump, the forwarders to the model — a restarted sidecar adopts it as
 * paused, and a second idle period stops it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { LAUNCHER_BINARY } from "../../src/codex/launcher.js";
import type { Docker } from "../../src/docker/engine.js";
import type { ContainerState, TurnResult } from "../../src/service.js";
import { ResponsesStub, lastUserMessageText } from "../support/responses-stub.js";
import { startGatewayStub, startTestSidecar, type TestSidecar } from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

/** Generous: the engine answers slowly on a loaded 2-core machine. */
const IDLE_WAIT = { timeoutMs: 30_000, intervalMs: 20 };

function stateIn(t: TestSidecar, workspaceId: string): Promise<ContainerState | undefined> {
  return t.sidecar.service.listWorkspaces().then((r) => r.workspaces.find((w) => w.workspaceId === workspaceId)?.state);
}

/** The launcher execs of the container (waiting for a turn, or done): id, running, exit code. */
async function launcherExecs(
  docker: Docker,
  containerId: string,
): Promise<Array<{ id: string; running: boolean; exitCode: number | null }>> {
  const info = await docker.getContainer(containerId).inspect();
  const execs = await Promise.all(
    (info.ExecIDs ?? []).map((id) =>
      docker
        .getExec(id)
        .inspect()
        .catch(() => null),
    ),
  );
  return execs
    .filter((e): e is NonNullable<typeof e> => e !== null && e.ProcessConfig.entrypoint === LAUNCHER_BINARY)
    .map((e) => ({ id: e.ID, running: e.Running, exitCode: e.ExitCode }));
}

const runTurn = (t: TestSidecar, workspaceId: string, turnId: string, input: string): Promise<TurnResult> =>
  t.sidecar.service.runTurn({ workspaceId, turnId, input }, { onEvent: () => {} });

describe("paused workspaces", () => {
  let stub: ResponsesStub;
  before(async () => {
    stub = await startGatewayStub();
  });
  after(async () => {
    await stub?.close();
  });

  test("a paused container is thawed, not restarted, and its launcher, log pump and model path carry on", async () => {
    const t = await startTestSidecar({ stub });
    try {
      const ws = await t.workspace();
      const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
      const [launcher] = await waitFor(
        async () => {
          const running = (await launcherExecs(t.docker, containerId)).filter((e) => e.running);
          return running.length === 1 ? running : null;
        },
        { ...IDLE_WAIT, what: "the launcher of the next turn" },
      );
      const startedAt = (await t.docker.getContainer(containerId).inspect()).State.StartedAt;

      // Paused from outside: the engine's "pause" event alone tells the sidecar.
      await t.docker.getContainer(containerId).pause();
      await waitFor(async () => (await stateIn(t, ws.workspaceId)) === "paused", {
        ...IDLE_WAIT,
        what: "workspace.list to say paused",
      });

      const again = await t.sidecar.service.ensureWorkspace(ws);
      assert.equal(again.containerId, containerId);
      assert.equal(again.state, "running");
      const info = await t.docker.getContainer(containerId).inspect();
      assert.equal(info.State.Paused, false);
      assert.equal(info.State.StartedAt, startedAt, "thawed, not started again");

      const result = await runTurn(t, ws.workspaceId, "turn-after-thaw", "hello after the thaw");
      assert.equal(result.status, "completed", JSON.stringify(result.error));
      assert.equal(
        lastUserMessageText(stub.requests.at(-1)!),
        "hello after the thaw",
        "the model was reached through the forwarders",
      );
      // A finished exec leaves the container's ExecIDs but can still be inspected by its id.
      // The engine may record the exit a moment after the exec's stream has ended.
      const done = await waitFor(
        async () => {
          const exec = await t.docker.getExec(launcher!.id).inspect();
          return exec.Running ? null : exec;
        },
        { ...IDLE_WAIT, what: "the launcher's exit" },
      );
      // The launcher started before the pause is gone: it ran this turn's codex, or was replaced.
      // (Engine 20.10 has been seen to record 126 for such an exec after a thaw although its turn
      // completed, so its exit code proves nothing; the turn above is the proof.)
      assert.equal(done.Running, false, "the launcher started before the pause is not left waiting");
      const logs = await waitFor(
        async () => {
          const text = (await t.sidecar.service.workspaceLogs({ workspaceId: ws.workspaceId })).logs;
          return text.includes("turn=turn-after-thaw thread=new event=started") ? text : null;
        },
        { ...IDLE_WAIT, what: "the turn's line in docker logs" },
      );
      assert.match(logs, /turn=turn-after-thaw/);
      assert.equal(await stateIn(t, ws.workspaceId), "running");
    } finally {
      await t.cleanup();
    }
  });

  test("the idle reaper pauses an idle workspace; a turn on it thaws it, and it is paused again when idle", async () => {
    const t = await startTestSidecar({ stub, flags: { "--idle-timeout": "1s", "--stop-timeout": "0" } });
    try {
      const ws = await t.workspace();
      const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
      await waitFor(async () => (await t.docker.getContainer(containerId).inspect()).State.Paused, {
        ...IDLE_WAIT,
        what: "the idle container to be paused",
      });
      await waitFor(async () => (await stateIn(t, ws.workspaceId)) === "paused", {
        ...IDLE_WAIT,
        what: "workspace.list to say paused",
      });

      const result = await runTurn(t, ws.workspaceId, "turn-on-paused", "hello, paused workspace");
      assert.equal(result.status, "completed", JSON.stringify(result.error));
      assert.equal(result.finalResponse, "ok");

      await waitFor(async () => (await t.docker.getContainer(containerId).inspect()).State.Paused, {
        ...IDLE_WAIT,
        what: "the container to be paused again",
      });
      const info = await t.docker.getContainer(containerId).inspect();
      assert.equal(info.State.Running, true, "paused, never stopped: the stop timeout is 0");
    } finally {
      await t.cleanup();
    }
  });

  test("a restarted sidecar adopts a paused workspace as paused, and it then runs a turn", async () => {
    const first = await startTestSidecar({ stub, flags: { "--idle-timeout": "1s", "--stop-timeout": "0" } });
    try {
      const ws = await first.workspace();
      const { containerId } = await first.sidecar.service.ensureWorkspace(ws);
      await waitFor(async () => (await first.docker.getContainer(containerId).inspect()).State.Paused, {
        ...IDLE_WAIT,
        what: "the idle container to be paused",
      });
      await first.stop();

      const second = await startTestSidecar({
        stub,
        reuse: first,
        flags: { "--idle-timeout": "1s", "--stop-timeout": "0" },
      });
      try {
        const entry = (await second.sidecar.service.listWorkspaces()).workspaces.find(
          (w) => w.workspaceId === ws.workspaceId,
        );
        assert.equal(entry?.containerId, containerId);
        assert.equal(entry?.state, "paused");
        assert.deepEqual(
          second.sidecar.workspaces.counts(),
          { running: 0, total: 1 },
          "a paused workspace is not counted as running",
        );

        const result = await runTurn(second, ws.workspaceId, "turn-after-adoption", "hello again");
        assert.equal(result.status, "completed", JSON.stringify(result.error));
        assert.equal((await second.docker.getContainer(containerId).inspect()).State.Paused, false);
      } finally {
        await second.stop();
      }
    } finally {
      await first.cleanup();
    }
  });

  test("the second idle period stops a paused workspace; the next ensure starts the same container", async () => {
    const t = await startTestSidecar({ stub, flags: { "--idle-timeout": "1s", "--stop-timeout": "1s" } });
    try {
      const ws = await t.workspace();
      const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
      const seen = new Set<ContainerState | undefined>();
      await waitFor(
        async () => {
          const state = await stateIn(t, ws.workspaceId);
          seen.add(state);
          return state === "exited";
        },
        { ...IDLE_WAIT, intervalMs: 10, what: "the paused container to be stopped" },
      );
      assert.ok(seen.has("paused"), `paused before it was stopped (seen: ${[...seen].join(", ")})`);
      assert.equal((await t.docker.getContainer(containerId).inspect()).State.Running, false);

      const again = await t.sidecar.service.ensureWorkspace(ws);
      assert.equal(again.containerId, containerId, "started again, not re-created");
      assert.equal((await t.docker.getContainer(containerId).inspect()).State.Running, true);
    } finally {
      await t.cleanup();
    }
  });
});
