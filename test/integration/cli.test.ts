/**
 * The alive-codex CLI through a REAL sidecar: `alive-codex serve` as a child process on tmp dirs, the
 * real engine and runtime image, codex driven by a scripted model on the test bridge; the client
 * commands as child processes against its socket. serve's environment carries fake secrets that must
 * never show up in its output or in a workspace container.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createDockerClient } from "../../src/docker/engine.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { SidecarClient } from "../../src/rpc/client.js";
import type { HealthResult, WorkspaceSummary } from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { startCli, type CliRun } from "../support/cli-process.js";
import { functionCallOutput, type ResponsesStub } from "../support/responses-stub.js";
import { startGatewayStub, testImage, uniqueId, TEST_GID, TEST_RUN_ID, TEST_UID } from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";

const CODEX_KEY = "sk-test-FAKE-KEY-must-not-leak-12345";
/** In serve's environment only: none of them may reach its output or a container. */
const ENV_SECRETS = {
  ANTHROPIC_API_KEY: "sk-ant-LEAKCHECK-0123456789abcdefghij",
  OPENAI_API_KEY: "sk-openai-LEAKCHECK-0123456789abcdefghij",
  DATABASE_URL: "postgres://alive:secret-db-LEAKCHECK-pw@db.internal:5432/alive",
};
const SECRET_VALUES = [CODEX_KEY, ...Object.values(ENV_SECRETS)];

describe("alive-codex against a real sidecar (serve as a child process)", () => {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  let stub: ResponsesStub;
  let root: string;
  let stateDir: string;
  let workspaceRoot: string;
  let socketPath: string;
  let serve: CliRun;
  /** Everything every CLI child printed, for the leak check. */
  const cliOutput: string[] = [];
  const workspaceId = uniqueId("cli");
  let workspaceDir: string;

  /** A workspace dir under the root, owned by the test uid. */
  async function makeWorkspaceDir(name: string): Promise<string> {
    const dir = path.join(workspaceRoot, name);
    await fs.mkdir(dir, { recursive: true });
    await fs.chown(dir, TEST_UID, TEST_GID);
    return dir;
  }

  /** Runs a client command to its end (bounded) against the serve child's socket. */
  async function cli(
    args: string[],
    timeoutMs = 90_000,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const run = startCli(args);
    const { code } = await withTimeout(run.exit, timeoutMs, `alive-codex ${args[0]}`).finally(() => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
    });
    cliOutput.push(run.stdout(), run.stderr());
    return { code, stdout: run.stdout(), stderr: run.stderr() };
  }

  async function containerEnv(name: string): Promise<string[]> {
    return (await docker.getContainer(name).inspect()).Config.Env ?? [];
  }

  function assertNoSecretIn(text: string, where: string): void {
    for (const secret of SECRET_VALUES)
      assert.ok(!text.includes(secret), `${where} contains a secret (${secret.slice(0, 12)}...)`);
  }

  before(async () => {
    stub = await startGatewayStub();
    root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-cli-"));
    await fs.chmod(root, 0o755);
    stateDir = path.join(root, "state");
    workspaceRoot = path.join(root, "workspaces");
    socketPath = path.join(root, "run", "sidecar.sock");
    await fs.mkdir(workspaceRoot, { recursive: true, mode: 0o755 });
    workspaceDir = await makeWorkspaceDir(workspaceId);
    // prettier-ignore
    const flags = [
      "--socket", socketPath,
      "--state-dir", stateDir,
      "--workspace-roots", workspaceRoot,
      "--image", testImage(),
      "--extra-labels", `${Labels.runId}=${TEST_RUN_ID}`,
      "--openai-base-url", stub.baseUrl,
      "--codex-api-key", CODEX_KEY,
      "--model", "gpt-5.5",
      "--uid-range", "10000-60000",
      "--gid-range", "10000-60000",
      "--idle-timeout", "0",
      // Drain: this suite's SIGTERM test is of that mode (leaving turns running is restart.test.ts's).
      "--on-stop", "drain",
      "--shutdown-grace", "3s",
      "--log-level", "debug",
      // Pinned off: the default, auto, mounts a disk per workspace on this machine, and the SIGTERM
      // test leaves a container running (and so its disk mounted) by design; disks are disk.test.ts's.
      "--disk", "off",
    ];
    serve = startCli(["serve", ...flags], ENV_SECRETS);
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
          try {
            return await client.health();
          } finally {
            await client.close();
          }
        },
        { timeoutMs: 60_000, intervalMs: 100, what: "alive-codex serve to answer on its socket" },
      ),
    ]);
  });

  after(async () => {
    if (serve && serve.child.exitCode === null && serve.child.signalCode === null) {
      serve.child.kill("SIGKILL");
      await withTimeout(serve.exit, 10_000, "serve to die").catch(() => undefined);
    }
    // serve's containers carry the run id (--extra-labels) and its state dir: reap by the state dir
    // now (the runner reaps by run id at the end), and wait until they are gone.
    if (stateDir) await reapLabelled(docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    if (root) await fs.rm(root, { recursive: true, force: true });
    await stub?.close();
  });

  test("health --json exits 0 and reports the engine and the image; plain health is readable", async () => {
    const { code, stdout, stderr } = await cli(["health", "--socket", socketPath, "--json"]);
    assert.equal(code, 0, stderr);
    const health = JSON.parse(stdout) as HealthResult;
    assert.equal(health.docker.reachable, true);
    assert.deepEqual(health.image, { ref: testImage(), present: true });
    assert.deepEqual(health.turns, { running: 0, detached: 0 });
    assert.deepEqual(health.disk, { enforcement: "none", attached: 0, requested: "off" });

    const plain = await cli(["health", "--socket", socketPath]);
    assert.match(plain.stdout, /^disk\s+NOT LIMITED \(ALIVE_CODEX_DISK=off\)$/m);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^docker\s+reachable/m);
    assert.match(
      plain.stdout,
      new RegExp(`^image\\s+${testImage().replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(present\\)$`, "m"),
    );
  });

  test("run streams the command line and the model's message, and exits 0", async () => {
    stub.reset();
    stub.script(
      { kind: "command", cmd: "echo cli-made-this; env | sort" },
      { kind: "message", text: "all done from the stub" },
    );
    const { code, stdout, stderr } = await cli([
      "run",
      "--socket",
      socketPath,
      "--workspace",
      workspaceId,
      "--path",
      workspaceDir,
      "--uid",
      String(TEST_UID),
      "--gid",
      String(TEST_GID),
      "make",
      "a",
      "file",
    ]);
    assert.equal(code, 0, `stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, new RegExp(`^turn turn-\\S+ accepted \\(workspace ${workspaceId}\\)$`, "m"));
    assert.match(stdout, /^thread [0-9a-f-]{36}$/m);
    assert.match(stdout, /^\$ .*echo cli-made-this; env \| sort/m, "the command line");
    assert.match(stdout, /^ {4}cli-made-this$/m, "the command's output, indented");
    assert.match(stdout, /^all done from the stub$/m, "the model's message");
    assert.match(
      stdout,
      /^-- completed · tokens: \d+ in \(\d+ cached\), \d+ out \(\d+ reasoning\) · thread [0-9a-f-]{36}$/m,
    );

    // The key did reach codex (so its absence elsewhere means something) ...
    assert.equal(stub.requests[0]?.headers.authorization, `Bearer ${CODEX_KEY}`);
    // ... and nothing of serve's environment reached the command codex ran.
    const commandOutput = functionCallOutput(stub.requests[1]!) ?? "";
    assert.match(commandOutput, new RegExp(`ALIVE_WORKSPACE_ID=${workspaceId}`), "the command's env was printed");
    assertNoSecretIn(commandOutput, "the command's environment");
    assert.doesNotMatch(commandOutput, /ANTHROPIC_API_KEY|DATABASE_URL|OPENAI_API_KEY|CODEX_API_KEY/);
    assertNoSecretIn(stdout, "run's output");
  });

  test("ps --json lists the workspace; ps prints a table", async () => {
    const { code, stdout, stderr } = await cli(["ps", "--socket", socketPath, "--json"]);
    assert.equal(code, 0, stderr);
    const { workspaces } = JSON.parse(stdout) as { workspaces: WorkspaceSummary[] };
    const entry = workspaces.find((w) => w.workspaceId === workspaceId);
    assert.ok(entry, stdout);
    assert.equal(entry.containerName, `alive-codex-${workspaceId}`);
    assert.equal(entry.state, "running");
    assert.equal(entry.activeTurnId, null);

    const table = await cli(["ps", "--socket", socketPath]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^WORKSPACE\s+USER\s+CONTAINER\s+STATE/m);
    assert.match(
      table.stdout,
      new RegExp(`^${workspaceId}\\s+\\S+\\s+${entry.containerId.slice(0, 12)}\\s+running`, "m"),
    );
  });

  test("logs --workspace shows the turn's lines, one timestamp each", async () => {
    // The engine copies the container's output into its log a moment after the turn ends.
    const { code, stdout, stderr } = await waitFor(
      async () => {
        const shown = await cli(["logs", "--socket", socketPath, "--workspace", workspaceId]);
        return shown.code !== 0 || /event=finished/.test(shown.stdout) ? shown : null;
      },
      { timeoutMs: 10_000, intervalMs: 200, what: "the turn's end in the workspace log" },
    );
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^\d{4}-\d\d-\d\dT\S+Z turn=turn-\S+ thread=new event=started$/m);
    assert.match(stdout, /turn=turn-\S+ thread=[0-9a-f-]{36} event=finished status=completed/);
    assertNoSecretIn(stdout, "the workspace log");
  });

  test("run with a hanging model: SIGINT cancels the turn and the CLI exits 130", async () => {
    stub.reset();
    stub.script({ kind: "hang" });
    const run = startCli([
      "run",
      "--socket",
      socketPath,
      "--workspace",
      workspaceId,
      "--path",
      workspaceDir,
      "--uid",
      String(TEST_UID),
      "--gid",
      String(TEST_GID),
      "hang",
      "please",
    ]);
    try {
      await stub.waitForRequests(1, 60_000);
      const client = await SidecarClient.connect(socketPath);
      try {
        const busy = (await client.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspaceId);
        assert.match(busy?.activeTurnId ?? "", /^turn-/, "the turn is running");
        run.child.kill("SIGINT");
        const { code } = await withTimeout(run.exit, 30_000, "the CLI to exit after SIGINT");
        assert.equal(code, 130, `stdout:\n${run.stdout()}\nstderr:\n${run.stderr()}`);
        assert.match(run.stderr(), /cancelling the turn/);
        assert.match(run.stdout(), /^-- cancelled/m, "the turn came back cancelled before the CLI left");
        await waitFor(
          async () =>
            (await client.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspaceId)?.activeTurnId ===
            null,
          {
            timeoutMs: 10_000,
            what: "the workspace to show no active turn",
          },
        );
        assert.equal((await client.health()).turns.running, 0);
      } finally {
        await client.close();
      }
      const top = await docker.getContainer(`alive-codex-${workspaceId}`).top();
      assert.ok(
        !top.Processes.some((row: string[]) => /(^|\/)codex(\s|$)/.test(row.at(-1) ?? "")),
        "no codex left in the container",
      );
    } finally {
      cliOutput.push(run.stdout(), run.stderr());
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
    }
  });

  test("the workspace container's env holds nothing of serve's environment", async () => {
    const env = await containerEnv(`alive-codex-${workspaceId}`);
    assert.ok(
      env.some((e) => e === `ALIVE_WORKSPACE_ID=${workspaceId}`),
      env.join("\n"),
    );
    assertNoSecretIn(env.join("\n"), "the container's env");
    for (const name of [...Object.keys(ENV_SECRETS), "CODEX_API_KEY"])
      assert.ok(!env.some((e) => e.startsWith(`${name}=`)), `${name} in the container's env`);
  });

  test("rm --purge removes the container and its HOME, and exits 0", async () => {
    const { code, stdout, stderr } = await cli(["rm", "--socket", socketPath, workspaceId, "--purge"]);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), `removed ${workspaceId}`);
    await assert.rejects(
      docker.getContainer(`alive-codex-${workspaceId}`).inspect(),
      (e: { statusCode?: number }) => e.statusCode === 404,
    );
    assert.equal(existsSync(workspacePaths(stateDir, workspaceId).root), false);
    const again = await cli(["rm", "--socket", socketPath, workspaceId]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), `${workspaceId}: nothing to remove`);
  });

  test("SIGTERM with a run in flight (--on-stop drain): the turn gets the grace, is cancelled, its CLI learns it; serve exits 0, its socket is gone, the container stays running", async () => {
    const keptId = uniqueId("kept");
    const keptDir = await makeWorkspaceDir(keptId);
    stub.reset();
    stub.script({ kind: "hang" });
    const run = startCli([
      "run",
      "--socket",
      socketPath,
      "--workspace",
      keptId,
      "--path",
      keptDir,
      "--uid",
      String(TEST_UID),
      "--gid",
      String(TEST_GID),
      "hang",
      "until",
      "shutdown",
    ]);
    try {
      await stub.waitForRequests(1, 60_000);
      const containerId = (await docker.getContainer(`alive-codex-${keptId}`).inspect()).Id;
      const signalledAt = Date.now();
      serve.child.kill("SIGTERM");

      const runExit = await withTimeout(run.exit, 30_000, "the CLI to get its turn back");
      assert.equal(runExit.code, 1, `stdout:\n${run.stdout()}\nstderr:\n${run.stderr()}`);
      assert.match(run.stdout(), /^-- cancelled/m);
      assert.match(run.stderr(), /turn turn-\S+ cancelled: the turn was cancelled/);

      const { code, signal } = await withTimeout(serve.exit, 30_000, "serve to exit after SIGTERM");
      assert.equal(signal, null);
      assert.equal(code, 0, serve.stderr());
      assert.ok(Date.now() - signalledAt >= 2900, "the running turn had the 3 s shutdown grace");
      await assert.rejects(fs.lstat(socketPath), { code: "ENOENT" });

      const info = await docker.getContainer(containerId).inspect();
      assert.equal(info.State.Running, true, "left running for the next sidecar to adopt");
      assert.equal(info.Config.Labels[Labels.stateDir], stateDir);
      const top = await docker.getContainer(containerId).top();
      assert.ok(
        !top.Processes.some((row: string[]) => /(^|\/)codex(\s|$)/.test(row.at(-1) ?? "")),
        "the cancelled turn's codex is gone",
      );
      const env = info.Config.Env ?? [];
      assertNoSecretIn(env.join("\n"), "the kept container's env");
      for (const name of Object.keys(ENV_SECRETS))
        assert.ok(!env.some((e) => e.startsWith(`${name}=`)), `${name} in the container's env`);
    } finally {
      cliOutput.push(run.stdout(), run.stderr());
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
    }
  });

  test("no fake secret appears in serve's output or any CLI output", () => {
    const out = serve.stdout();
    const err = serve.stderr();
    assert.match(out + err, /alive-codex sidecar ready/, "serve's log was captured");
    assert.match(out + err, /"msg":"turn finished"/, "serve logged the turns");
    assertNoSecretIn(out, "serve's stdout");
    assertNoSecretIn(err, "serve's stderr");
    assertNoSecretIn(cliOutput.join("\n"), "the CLI's output");
  });
});
