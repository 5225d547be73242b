/**
 * A sidecar killed mid-turn (SIGKILL: no shutdown, no sweep), then started again on the same state
 * dir: `alive-codex serve` as a child process, the real engine and codex, the scripted model. The
 * killed sidecar's turn keeps running in the container (the exec outlives its client); the new one
 * sweeps it before it serves, ends it in the journal as sidecar_restarted, and the workspace takes
 * a new turn.
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

  async function startServe(): Promise<{ serve: CliRun; readyMs: number }> {
    const started = Date.now();
    const serve = startCli(["serve", ...flags]);
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

  test("SIGKILL mid-turn, then start: no process of the turn within 5 s, turn.get says sidecar_restarted, a new turn works", async () => {
    const workspaceId = uniqueId("restart");
    const workspacePath = path.join(root, "workspaces", workspaceId);
    await fs.mkdir(workspacePath);
    await fs.chown(workspacePath, TEST_UID, TEST_GID);
    const first = await startServe();
    const client = await SidecarClient.connect(socketPath);
    const ensured = await client.ensureWorkspace({
      workspaceId,
      userId: "u-restart",
      uid: TEST_UID,
      gid: TEST_GID,
      workspacePath,
    });
    stub.script(
      { kind: "command", cmd: "(setsid sleep 1001 </dev/null >/dev/null 2>&1 &); sleep 1000" },
      { kind: "message", text: "never" },
    );
    const turnId = uniqueId("turn-killed");
    const run = client.runTurn({ workspaceId, turnId, input: "run for a long time" });
    run.result.catch(() => undefined);
    const seen: TurnEventMessage[] = [];
    void (async () => {
      for await (const message of run) seen.push(message);
    })().catch(() => undefined);
    await waitFor(async () => (await leftProcesses(ensured.containerId)).some((p) => /sleep 1001/.test(p.args)), {
      timeoutMs: 30_000,
      what: "the turn's setsid'd sleep",
    });

    first.serve.child.kill("SIGKILL");
    await withTimeout(first.serve.exit, 10_000, "the killed serve to exit");
    await client.close().catch(() => undefined);
    // What the operator saw before this fix: the killed sidecar's turn runs on in the container.
    const running = await leftProcesses(ensured.containerId);
    assert.ok(
      running.filter((p) => p.role === "turn").length >= 2,
      `the killed sidecar's turn (codex and its command) should still be running before the restart: ${lines(running).join("; ")}`,
    );

    const startedAt = Date.now();
    const second = await startServe();
    await waitFor(async () => (await leftProcesses(ensured.containerId)).length === 0, {
      timeoutMs: 5000,
      intervalMs: 50,
      what: "no process of the killed sidecar's turn",
    }).catch(async (error: Error) => {
      throw new Error(
        `${error.message}; left: ${JSON.stringify(lines(await leftProcesses(ensured.containerId)))}\n${second.serve.stdout().slice(-4000)}`,
      );
    });
    const orphanFreeMs = Date.now() - startedAt;
    assert.ok(orphanFreeMs < 5000, `orphan-free ${orphanFreeMs} ms after the start`);
    // Swept before it served: when its socket first answered, nothing of the turn was left.
    assert.match(
      second.serve.stdout() + second.serve.stderr(),
      /swept adopted workspaces of turns an earlier sidecar left running/,
    );

    const again = await SidecarClient.connect(socketPath);
    try {
      const info = await again.getTurn(turnId);
      assert.deepEqual(
        [info.status, info.result?.status, info.result?.error?.code],
        ["failed", "failed", "sidecar_restarted"],
      );
      assert.equal(info.workspaceId, workspaceId);
      assert.ok(info.lastSeq >= seen.at(-1)!.seq, `journal last seq ${info.lastSeq}, client saw ${seen.at(-1)?.seq}`);
      const replay = again.attachTurn(turnId);
      const replayed: TurnEventMessage[] = [];
      for await (const message of replay) replayed.push(message);
      assert.deepEqual(replayed.slice(0, seen.length), seen);
      assert.equal((await replay.result).error?.code, "sidecar_restarted");
      assert.deepEqual(
        (await again.listTurns({ workspaceId, status: "failed" })).turns.map((t) => t.turnId),
        [turnId],
      );

      // The workspace is idle and takes a new turn.
      const listed = (await again.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspaceId);
      assert.deepEqual([listed?.activeTurnId, listed?.containerId], [null, ensured.containerId]);
      stub.reset();
      stub.script({ kind: "message", text: "alive after the restart" });
      const next = again.runTurn({ workspaceId, input: "are you there?" });
      const result = await next.result;
      assert.deepEqual([result.status, result.finalResponse], ["completed", "alive after the restart"]);
    } finally {
      await again.close();
    }
    process.stdout.write(
      `# restart: serve ready ${second.readyMs} ms, orphan-free ${orphanFreeMs} ms after the start\n`,
    );
  });
});
