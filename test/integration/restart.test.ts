/**
 * A sidecar that dies or stops mid-turn, then a new one on the same state dir: `alive-codex serve` as
 * a child process, the real engine and codex, the scripted model. Codex lives in the workspace's
 * container with its output in files, so the new sidecar adopts the turn: it streams on from the
 * journal's last seq with no gap and no duplicate, and the turn ends with its real result. Only a
 * turn whose container died in the gap ends as before (container_died).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { isOwnProcess, type ClassifiedProcess } from "../../src/codex/container-processes.js";
import { createDockerClient } from "../../src/docker/engine.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { SidecarClient, type TurnEventMessage } from "../../src/rpc/client.js";
import { startCli, type CliRun } from "../support/cli-process.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import {
  containerProcesses,
  startGatewayStub,
  testImage,
  uniqueId,
  TEST_GID,
  TEST_RUN_ID,
  TEST_UID,
} from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";

/**
 * What the killed sidecar's turn runs or left in the container: every process but the container's
 * own and the launcher waiting for a turn (src/codex/container-processes.ts), zombies aside: codex,
 * its command and the sleeps, one setsid'd away to the init.
 */
async function leftProcesses(containerId: string): Promise<ClassifiedProcess[]> {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  return (await containerProcesses(docker, containerId)).filter((p) => !isOwnProcess(p) && p.args !== "");
}

const lines = (processes: readonly ClassifiedProcess[]): string[] =>
  processes.map((p) => `${p.pid} ${p.role} ${p.args}`);

describe("a sidecar killed mid-turn, then started again", () => {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  let stub: ResponsesStub;
  let root: string;
  let stateDir: string;
  let socketPath: string;
  let flags: string[];
  const serves: CliRun[] = [];

  async function startServe(options: { group?: boolean } = {}): Promise<{ serve: CliRun; readyMs: number }> {
    const started = Date.now();
    const serve = startCli(["serve", ...flags], {}, options);
    serves.push(serve);
    const exitedEarly = serve.exit.then(({ code, signal }) => {
      throw new Error(
        `serve exited before it answered (code ${code}, signal ${signal}):\n${serve.stderr()}\n${serve.stdout()}`,
      );
    });
    exitedEarly.catch(() => {});
    await Promise.race([
      exitedEarly,
      waitFor(
        async () => {
          const client = await SidecarClient.connect(socketPath, { timeoutMs: 1000 });
          await client.close();
          return true;
        },
        { timeoutMs: 60_000, intervalMs: 25, what: "alive-codex serve to answer on its socket" },
      ),
    ]);
    return { serve, readyMs: Date.now() - started };
  }

  before(async () => {
    stub = await startGatewayStub();
    root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-restart-"));
    await fs.chmod(root, 0o755);
    stateDir = path.join(root, "state");
    socketPath = path.join(root, "sidecar.sock");
    await fs.mkdir(path.join(root, "workspaces"), { recursive: true, mode: 0o755 });
    // prettier-ignore
    flags = [
      "--socket", socketPath,
      "--state-dir", stateDir,
      "--workspace-roots", path.join(root, "workspaces"),
      "--image", testImage(),
      "--extra-labels", `${Labels.runId}=${TEST_RUN_ID}`,
      // Pinned off: the default (auto) mounts a disk per workspace here, and a SIGKILLed serve leaves
      // it mounted by design (the next sidecar adopts it); disks across a restart are disk.test.ts's.
      "--disk", "off",
      "--openai-base-url", stub.baseUrl,
      "--codex-api-key", "sk-test-restart-0123456789",
      "--model", "gpt-5.5",
      "--uid-range", "10000-60000",
      "--gid-range", "10000-60000",
      "--idle-timeout", "0",
      "--log-level", "debug",
    ];
  });

  after(async () => {
    for (const serve of serves) {
      if (serve.child.exitCode === null && serve.child.signalCode === null) {
        serve.child.kill("SIGKILL");
        await withTimeout(serve.exit, 10_000, "serve to die").catch(() => undefined);
      }
    }
    if (stateDir) await reapLabelled(docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    if (root) await fs.rm(root, { recursive: true, force: true });
    await stub?.close();
  });

  /** A fresh workspace, ensured on the running sidecar. */
  async function freshWorkspace(
    client: SidecarClient,
    name: string,
  ): Promise<{ workspaceId: string; containerId: string }> {
    const workspaceId = uniqueId(name);
    const workspacePath = path.join(root, "workspaces", workspaceId);
    await fs.mkdir(workspacePath);
    await fs.chown(workspacePath, TEST_UID, TEST_GID);
    const ensured = await client.ensureWorkspace({
      workspaceId,
      userId: "u-restart",
      uid: TEST_UID,
      gid: TEST_GID,
      workspacePath,
    });
    return { workspaceId, containerId: ensured.containerId };
  }

  /** Runs a turn and keeps what its client sees until the connection goes. */
  function startTurn(client: SidecarClient, workspaceId: string, turnId: string): TurnEventMessage[] {
    const run = client.runTurn({ workspaceId, turnId, input: "go", options: { onDisconnect: "continue" } });
    run.result.catch(() => undefined);
    const seen: TurnEventMessage[] = [];
    void (async () => {
      for await (const message of run) seen.push(message);
    })().catch(() => undefined);
    return seen;
  }

  /**
   * On the new sidecar: attaches after the last event the old one's client saw, and checks the turn
   * ends completed with `final`, its events gap-free from there on. Returns the events.
   */
  async function attachAfter(
    seen: readonly TurnEventMessage[],
    turnId: string,
    final: string,
  ): Promise<TurnEventMessage[]> {
    const client = await SidecarClient.connect(socketPath);
    try {
      const afterSeq = seen.at(-1)?.seq ?? -1;
      const run = client.attachTurn(turnId, { afterSeq });
      const events: TurnEventMessage[] = [];
      for await (const message of run) events.push(message);
      const result = await withTimeout(run.result, 60_000, "the adopted turn's result");
      assert.deepEqual([result.status, result.finalResponse, result.error], ["completed", final, undefined]);
      assert.deepEqual(
        events.map((e) => e.seq),
        events.map((_, i) => afterSeq + 1 + i),
        "the events after afterSeq come without gap or duplicate",
      );
      assert.ok(events.length > 0, "the turn went on after the restart");
      assert.equal(events.at(-1)?.event.type, "turn.completed");
      const health = await client.health();
      assert.deepEqual(health.turns, { running: 0, detached: 0 }, "no stray turn");
      return events;
    } finally {
      await client.close();
    }
  }

  /** The text of the command outputs among the events. */
  const commandOutputs = (events: readonly TurnEventMessage[]): string =>
    events
      .map(({ event }) =>
        event.type === "item.completed" && event.item.type === "command_execution" ? event.item.aggregated_output : "",
      )
      .join("\n");

  async function stopServe(serve: CliRun, how: "SIGKILL" | "group SIGTERM"): Promise<number> {
    const started = Date.now();
    if (how === "SIGKILL") serve.child.kill("SIGKILL");
    else process.kill(-serve.child.pid!, "SIGTERM");
    const exit = await withTimeout(serve.exit, 10_000, "the stopped serve to exit");
    if (how === "group SIGTERM") assert.deepEqual(exit, { code: 0, signal: null }, serve.stderr().slice(-2000));
    return Date.now() - started;
  }

  for (const how of ["SIGKILL", "group SIGTERM"] as const) {
    test(`${how} 1 s into \`sleep 6; echo AFTER\`, then a new sidecar: the turn is adopted and completes with the command's output`, async () => {
      const first = await startServe({ group: how !== "SIGKILL" });
      const client = await SidecarClient.connect(socketPath);
      const { workspaceId, containerId } = await freshWorkspace(client, "adopt");
      stub.reset();
      stub.script({ kind: "command", cmd: "sleep 6; echo AFTER" }, { kind: "message", text: `survived ${how}` });
      const turnId = uniqueId("turn-adopted");
      const seen = startTurn(client, workspaceId, turnId);
      await waitFor(async () => (await leftProcesses(containerId)).some((p) => /sleep 6/.test(p.args)), {
        timeoutMs: 30_000,
        what: "the turn's command",
      });
      await new Promise((resolve) => setTimeout(resolve, 1000)); // "1 s into the command": the scenario, not a wait
      const stopMs = await stopServe(first.serve, how);
      await client.close().catch(() => undefined);
      if (how !== "SIGKILL") assert.ok(stopMs < 2000, `SIGTERM: stopped in ${stopMs} ms`);
      assert.ok(
        (await leftProcesses(containerId)).some((p) => /sleep 6/.test(p.args)),
        "the command runs on while no sidecar does",
      );
      const second = await startServe();
      const events = await attachAfter(seen, turnId, `survived ${how}`);
      assert.match(commandOutputs(events), /AFTER/);
      await waitFor(async () => (await leftProcesses(containerId)).length === 0, {
        timeoutMs: 5000,
        what: "nothing of the turn left running",
      });
      assert.match(second.serve.stdout() + second.serve.stderr(), /adopting a turn an earlier sidecar left running/);
      second.serve.child.kill("SIGKILL");
      await second.serve.exit;
      process.stdout.write(`# restart: ${how} stop ${stopMs} ms, next serve ready ${second.readyMs} ms\n`);
    });
  }

  test("SIGKILL while the model's answer is still streaming: codex retries it on the new sidecar, and the turn completes", async () => {
    const first = await startServe();
    const client = await SidecarClient.connect(socketPath);
    const { workspaceId } = await freshWorkspace(client, "adopt-sse");
    stub.reset();
    stub.script(
      { kind: "command", cmd: "echo before" },
      { kind: "message", text: "cut off with the sidecar", delayMs: 30_000 },
      { kind: "message", text: "answered after the restart" },
    );
    const turnId = uniqueId("turn-sse");
    const seen = startTurn(client, workspaceId, turnId);
    await stub.waitForRequests(2, 30_000);
    first.serve.child.kill("SIGKILL");
    await first.serve.exit;
    await client.close().catch(() => undefined);
    const second = await startServe();
    const events = await attachAfter(seen, turnId, "answered after the restart");
    assert.ok(stub.requests.length >= 3, "codex asked again after the stream broke");
    assert.ok(!events.some((e) => JSON.stringify(e.event).includes("cut off with the sidecar")));
    second.serve.child.kill("SIGKILL");
    await second.serve.exit;
  });

  test("an adopted turn is cancelled like any other; one whose container died in the gap ends container_died; one of the previous release (no record) ends sidecar_restarted, swept", async () => {
    const first = await startServe();
    const client = await SidecarClient.connect(socketPath);
    const kept = await freshWorkspace(client, "adopt-cancel");
    const lost = await freshWorkspace(client, "adopt-lost");
    const old = await freshWorkspace(client, "adopt-old");
    stub.reset();
    const long = { kind: "command", cmd: "(setsid sleep 1001 </dev/null >/dev/null 2>&1 &); sleep 1000" } as const;
    stub.script(long, long, long);
    const keptTurn = uniqueId("turn-kept");
    const lostTurn = uniqueId("turn-lost");
    const oldTurn = uniqueId("turn-old");
    startTurn(client, kept.workspaceId, keptTurn);
    startTurn(client, lost.workspaceId, lostTurn);
    startTurn(client, old.workspaceId, oldTurn);
    for (const { containerId } of [kept, lost, old])
      await waitFor(async () => (await leftProcesses(containerId)).some((p) => /sleep 1001/.test(p.args)), {
        timeoutMs: 30_000,
        what: "the turn's setsid'd sleep",
      });
    first.serve.child.kill("SIGKILL");
    await first.serve.exit;
    await client.close().catch(() => undefined);
    await docker.getContainer(lost.containerId).kill();
    // What the previous release leaves: the journal and the run dirs, no turn record.
    await fs.rm(path.join(stateDir, "turns", `${oldTurn}.json`));
    await fs.rm(path.join(stateDir, "state-format.json"));
    await startServe();
    const again = await SidecarClient.connect(socketPath);
    try {
      const lostInfo = await again.getTurn(lostTurn);
      assert.deepEqual([lostInfo.status, lostInfo.result?.error?.code], ["failed", "container_died"]);
      const oldInfo = await again.getTurn(oldTurn);
      assert.deepEqual([oldInfo.status, oldInfo.result?.error?.code], ["failed", "sidecar_restarted"]);
      assert.deepEqual(lines(await leftProcesses(old.containerId)), [], "its processes were swept before serving");
      assert.equal((await again.getTurn(keptTurn)).status, "running");
      assert.equal((await again.cancelTurn(keptTurn)).cancelled, true);
      const info = await again.getTurn(keptTurn);
      assert.deepEqual([info.status, info.result?.error?.code], ["cancelled", "cancelled"]);
      // (A launcher being started for the next turn shows for a moment as `runc init`.)
      await waitFor(async () => (await leftProcesses(kept.containerId)).length === 0, {
        timeoutMs: 5000,
        what: "the cancel to have swept the adopted turn, its setsid'd sleep included",
      }).catch(async (error: Error) => {
        throw new Error(`${error.message}: ${lines(await leftProcesses(kept.containerId)).join("; ")}`);
      });
      stub.reset();
      stub.script({ kind: "message", text: "alive after the restart" });
      const result = await again.runTurn({ workspaceId: kept.workspaceId, input: "are you there?" }).result;
      assert.deepEqual([result.status, result.finalResponse], ["completed", "alive after the restart"]);
    } finally {
      await again.close();
    }
  });
});
