/**
 * Our own escape and abuse suite (docs/security.md), from the agent's own position: codex runs
 * test/support/escape-probes.sh as a command of a real turn inside a workspace, under runc and under
 * runsc. Each probe prints HELD or BROKEN with its evidence; every expected probe must be there and
 * none BROKEN. Two are judged here on the host: the log flood (the container's log files stay within
 * the json-file rotation) and the host listener (no connection ever arrived). Last, the workspace's
 * `isolation` in workspace.list must say what the probes saw. Under runsc the fork and memory bombs
 * end the whole sandbox, so they run apart, one turn each, and what is asserted is that only that
 * sandbox dies and the workspace comes back (the tests at the end).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import { execFile } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { IsolationReport, TurnResult, WorkspaceParams } from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { hostAddresses } from "../../src/workspace/isolation-probe.js";
import { hostPidsLimit } from "../../src/workspace/runtimes.js";
import { ResponsesStub, functionCallOutput } from "../support/responses-stub.js";
import { waitFor } from "../support/wait.js";
import { assertNotStalled, retryOnSandboxStall } from "../support/stall-retry.js";
import { TEST_API_KEY, TEST_UID, execIn, startTestSidecar, testGateway, type TestSidecar } from "../support/sidecar.js";

const PROBES_SOURCE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../test/support/escape-probes.sh",
);
const TURN_TIMEOUT_MS = 240_000;
/** The workspace's pids limit (under gVisor the engine's limit is hostPidsLimit of it: runtimes.ts). */
const PIDS = 512;
const MEMORY_MB = 384;
/** The probes in parts, one exec_command each: codex hands a command back after at most 30 s. */
const PARTS = ["privileges", "kernel", "network", "bombs"] as const;
/** The json-file rotation every workspace container gets (spec.ts): max-size 10m, max-file 3. */
const LOG_BOUND_BYTES = 3 * 10 * 1024 * 1024;

const EXPECTED = [
  "runtime",
  "uid_not_root",
  "no_docker_group",
  "cap_eff_zero",
  "cap_bnd_zero",
  "no_new_privs",
  "seccomp",
  "setuid_powerless",
  "no_engine_socket",
  "pid_namespace",
  "mount_unshare",
  "sysrq",
  "core_pattern",
  "kcore",
  "sysfs_write",
  "hostname",
  "clock",
  "chown_root",
  "mknod",
  "rootfs_write",
  "proc1_mem",
  "raw_socket",
  "leaked_fds",
  "proc_self_exe",
  "other_workspace",
  "dockerd_tcp",
  "host_services",
  "default_route",
  "model_key",
  "fork_bomb",
  "memory_bomb",
  "tmpfs_bomb",
  "disk_bomb",
  "log_flood",
] as const;

interface ProbeLine {
  verdict: "HELD" | "BROKEN" | "NOTE" | "CHECK";
  name: string;
  evidence: string;
}

function parseProbeLines(text: string): ProbeLine[] {
  return text
    .split("\n")
    .map((line) => /^(HELD|BROKEN|NOTE|CHECK) (\S+) ?(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ verdict: m[1] as ProbeLine["verdict"], name: m[2] as string, evidence: m[3] ?? "" }));
}

/** Sizes of the container's json-file log and its rotated files. */
async function containerLogBytes(t: TestSidecar, containerId: string): Promise<number> {
  const logPath = (await t.docker.getContainer(containerId).inspect()).LogPath;
  const dir = path.dirname(logPath);
  const base = path.basename(logPath);
  let total = 0;
  for (const name of await fs.readdir(dir))
    if (name.startsWith(base)) total += (await fs.stat(path.join(dir, name))).size;
  return total;
}

/** Host processes whose command line names the container (runsc's sandbox, gofer and stubs, the shim). */
async function hostProcessesOf(containerId: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile("pgrep", ["-af", containerId], (error, stdout) => {
      if (error && (error as { code?: unknown }).code !== 1) reject(error);
      else resolve(stdout.split("\n").filter((l) => l.trim() !== "" && !l.includes("pgrep")));
    });
  });
}

describe("escape and abuse suite, from inside a codex turn", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  let listener: net.Server;
  let listenerPort = 0;
  let accepted = 0;
  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    t = await startTestSidecar({ stub });
    listener = net.createServer((socket) => {
      accepted += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, "0.0.0.0", resolve));
    listenerPort = (listener.address() as net.AddressInfo).port;
  });
  after(async () => {
    await new Promise((resolve) => listener?.close(resolve));
    await t?.cleanup();
    await stub?.close();
  });

  /**
   * Runs the probes through one codex turn in a fresh workspace of `runtime` (with another workspace
   * beside it to go for). A turn the stall watch ended sandbox_stalled (gVisor's random stall,
   * docs/runtimes.md) runs once more in fresh workspaces, saying so (stall-retry.ts); the probes'
   * verdicts are never retried: a BROKEN line fails at once, either attempt.
   */
  function runProbes(
    runtime: string,
    parts: readonly string[],
    skip: string[] = [],
  ): Promise<{ lines: ProbeLine[]; result: TurnResult; ws: WorkspaceParams; written: string }> {
    return retryOnSandboxStall(`${runtime}: escape probes`, () => runProbesOnce(runtime, parts, skip), {
      commands: parts.length,
    });
  }

  async function runProbesOnce(
    runtime: string,
    parts: readonly string[],
    skip: string[],
  ): Promise<{ lines: ProbeLine[]; result: TurnResult; ws: WorkspaceParams; written: string }> {
    const other = await t.workspace(undefined, { runtime });
    const otherEnsured = await t.sidecar.service.ensureWorkspace(other);
    await fs.writeFile(path.join(other.workspacePath, "secret.txt"), "other tenant's secret\n");
    const mark = `sleep 4${Math.floor(Math.random() * 1e6)}`;
    await execIn(
      t.docker,
      otherEnsured.containerId,
      ["/bin/sh", "-c", `${mark} </dev/null >/dev/null 2>&1 &`],
      `${TEST_UID}:${TEST_UID}`,
    );
    const otherSocket = path.join(workspacePaths(t.stateDir, other.workspaceId).net, "proxy.sock");
    await fs.access(otherSocket);

    const ws = await t.workspace(undefined, { runtime, resources: { pids: PIDS, memoryMb: MEMORY_MB } });
    const ensured = await t.sidecar.service.ensureWorkspace(ws);
    await fs.copyFile(PROBES_SOURCE, path.join(ws.workspacePath, "escape-probes.sh"));
    const hosts = [...new Set([...hostAddresses(), await testGateway(t.docker)])];
    const env: Record<string, string> = {
      ESC_RUNTIME: runtime,
      ESC_OTHER_PATH: other.workspacePath,
      ESC_OTHER_MARK: mark,
      ESC_OTHER_SOCKET: otherSocket,
      ESC_HOSTS: hosts.join(" "),
      ESC_LISTEN_PORT: String(listenerPort),
      ESC_KEY_HEX: Buffer.from(TEST_API_KEY).toString("hex"),
      ESC_PIDS: String(hostPidsLimit(runtime, PIDS)),
      ESC_MEM_MB: String(MEMORY_MB),
      ESC_DISK_QUOTA_MB: "",
      ESC_SKIP: skip.join(" "),
      ESC_OUT: "escape-results.txt",
    };
    const vars = Object.entries(env)
      .map(([k, v]) => `${k}='${v}'`)
      .join(" ");
    stub.reset();
    stub.script(
      ...parts.map((part) => ({
        kind: "command" as const,
        cmd: `${vars} bash ./escape-probes.sh ${part}`,
        yieldTimeMs: 30_000,
        maxOutputTokens: 30_000,
      })),
      { kind: "message", text: "probed" },
    );
    const logBefore = await containerLogBytes(t, ensured.containerId);
    const started = Date.now();
    const result = await t.sidecar.service.runTurn(
      { workspaceId: ws.workspaceId, input: "probe the sandbox", options: { timeoutMs: TURN_TIMEOUT_MS } },
      { onEvent: () => undefined },
    );
    const seconds = (Date.now() - started) / 1000;
    const written = await fs.readFile(path.join(ws.workspacePath, "escape-results.txt"), "utf8").catch(() => "");
    console.log(`--- ${runtime} (turn ${seconds.toFixed(1)} s)\n${written.trimEnd()}`);
    const verdicts = parseProbeLines(written);
    assert.deepEqual(
      verdicts.filter((l) => l.verdict === "BROKEN").map((l) => `${l.name} ${l.evidence}`),
      [],
      "no probe broke out, whatever became of the turn",
    );
    assertNotStalled(
      result,
      `the ${runtime} probe turn (it got as far as: ${written.trimEnd().split("\n").at(-1) ?? "nothing"})`,
    );
    assert.equal(
      result.status,
      "completed",
      `${JSON.stringify(result.error)}; the probes got as far as: ${written.trimEnd().split("\n").at(-1) ?? "nothing"}`,
    );
    const lines = parseProbeLines(written);
    parts.forEach((part, i) => {
      const seen = functionCallOutput(stub.requests[i + 1]!) ?? "";
      assert.match(
        seen,
        new RegExp(`DONE escape-probes ${part}`),
        `codex ran part ${part} to its end and posted its output to the model: ${seen.slice(0, 300)}`,
      );
      assert.ok(!seen.includes(TEST_API_KEY), "the key is not in what the model saw");
    });

    // Judged on the host: the flood stayed within the log rotation; the listener saw no one.
    const flood = lines.find((l) => l.name === "log_flood");
    if (flood?.verdict === "CHECK") {
      const bytes = await containerLogBytes(t, ensured.containerId);
      const evidence = `container log files ${(bytes / 2 ** 20).toFixed(1)} MiB after ${flood.evidence} (was ${(logBefore / 2 ** 20).toFixed(1)} MiB; bound 3 x 10 MiB)`;
      flood.verdict = bytes <= LOG_BOUND_BYTES + 2 * 2 ** 20 ? "HELD" : "BROKEN";
      flood.evidence = evidence;
      console.log(`${flood.verdict} log_flood ${evidence}`);
    }
    assert.equal(accepted, 0, "no connection from a workspace reached the host's listener");
    return { lines, result, ws, written };
  }

  for (const runtime of ["runc", "runsc"] as const) {
    // Under gVisor the fork and memory bombs take the whole sandbox down (the todo tests below): skipped here.
    const skip = runtime === "runsc" ? ["fork_bomb", "memory_bomb"] : [];
    test(`${runtime}: every probe holds, and workspace.list's isolation says what the probes saw`, async () => {
      const { lines, ws } = await runProbes(runtime, PARTS, skip);
      const names = new Set(lines.map((l) => l.name));
      const missing = EXPECTED.filter((name) => !names.has(name));
      assert.deepEqual(missing, [], `probes that printed nothing: ${missing.join(", ")}`);
      const notes = new Set(["disk_bomb", ...skip]);
      const broken = lines.filter((l) => l.verdict === "BROKEN" || (l.verdict !== "HELD" && !notes.has(l.name)));
      assert.deepEqual(
        broken.map((l) => `${l.verdict} ${l.name} ${l.evidence}`),
        [],
      );

      // workspace.list's isolation says what the probes saw.
      const listed = (await t.sidecar.service.listWorkspaces()).workspaces.find(
        (w) => w.workspaceId === ws.workspaceId,
      );
      const r = listed?.isolation as IsolationReport;
      const evidence = (name: string): string => lines.find((l) => l.name === name)?.evidence ?? "";
      assert.equal(r.runtime, runtime);
      assert.match(evidence("runtime"), runtime === "runsc" ? /^gVisor detected/ : /^runc: the host kernel/);
      assert.match(evidence("uid_not_root"), new RegExp(`^uid ${r.user.uid} gid ${r.user.gid}$`));
      assert.match(evidence("no_docker_group"), new RegExp(`^groups \\[${r.user.groups.join(",")}\\]`));
      assert.match(
        evidence("cap_eff_zero"),
        new RegExp(`CapEff ${r.capabilities.effective} CapPrm ${r.capabilities.permitted}`),
      );
      assert.equal(evidence("cap_bnd_zero"), `CapBnd ${r.capabilities.bounding}`);
      assert.equal(evidence("no_new_privs"), r.noNewPrivs ? "no_new_privs 1" : "no_new_privs 0");
      assert.match(evidence("seccomp"), r.seccomp === "gvisor-sentry" ? /^gvisor-sentry/ : /^Seccomp 2 \(filter\)/);
      assert.equal(r.hostReachable, false);
      assert.equal(r.network.defaultRoute, false);
      assert.deepEqual(r.network.interfaces, ["lo"]);
      assert.match(evidence("default_route"), /interfaces: lo;/);
      assert.equal(r.readOnlyRoot, true);
      assert.equal(r.limits.pids, hostPidsLimit(runtime, PIDS));
      assert.equal(r.limits.memoryBytes, MEMORY_MB * 2 ** 20);
      assert.equal(r.modelKey, "proxy");
    });
  }

  // Found by this suite: under gVisor the pids and memory limits are enforced on the sandbox's host
  // tasks (the Sentry and its ptrace stubs), not inside it, so a bomb that reaches one stops the whole
  // sandbox (the Sentry panics, or the host OOM-kills it) instead of failing a fork or killing the
  // allocating process inside. What holds, and is asserted here, is containment at the sandbox: the
  // bomb's turn ends container_died well before its timeout, a neighbour sandbox carries on untouched
  // (an exec during the bomb, same StartedAt and restart count after), the sidecar answers health,
  // nothing of the dead sandbox runs on the host, and the next ensure brings the workspace back for a
  // command turn. (docs/security.md, "Found: a fork or memory bomb stops a gVisor sandbox".)
  const BOMB_TURN_TIMEOUT_MS = 180_000;
  for (const bomb of ["fork_bomb", "memory_bomb"] as const) {
    test(`runsc: the ${bomb.replace("_", " ")} stops its own sandbox alone; the neighbour, the host and the sidecar carry on; the next ensure brings the workspace back`, () =>
      retryOnSandboxStall(`runsc: ${bomb}`, async () => {
        const neighbour = await t.workspace(undefined, { runtime: "runsc" });
        const neighbourId = (await t.sidecar.service.ensureWorkspace(neighbour)).containerId;
        const neighbourBefore = await t.docker.getContainer(neighbourId).inspect();

        const ws = await t.workspace(undefined, { runtime: "runsc", resources: { pids: PIDS, memoryMb: MEMORY_MB } });
        const containerId = (await t.sidecar.service.ensureWorkspace(ws)).containerId;
        const startedBefore = (await t.docker.getContainer(containerId).inspect()).State.StartedAt;
        // The host-side check below can see a live sandbox: its processes name the container.
        const hostBefore = await hostProcessesOf(containerId);
        assert.ok(hostBefore.length > 0, `no host process names the live sandbox ${containerId}`);
        await fs.copyFile(PROBES_SOURCE, path.join(ws.workspacePath, "escape-probes.sh"));
        const results = path.join(ws.workspacePath, "escape-results.txt");
        const vars = `ESC_RUNTIME=runsc ESC_PIDS='${hostPidsLimit("runsc", PIDS)}' ESC_MEM_MB='${MEMORY_MB}' ESC_OUT=escape-results.txt`;
        stub.reset();
        stub.script(
          {
            kind: "command",
            cmd: `${vars} bash ./escape-probes.sh ${bomb}`,
            yieldTimeMs: 30_000,
            maxOutputTokens: 30_000,
          },
          { kind: "message", text: "bombed" },
        );
        const started = Date.now();
        const turn = t.sidecar.service.runTurn(
          { workspaceId: ws.workspaceId, input: "bomb the sandbox", options: { timeoutMs: BOMB_TURN_TIMEOUT_MS } },
          { onEvent: () => undefined },
        );
        let settled = false;
        void turn.finally(() => (settled = true)).catch(() => undefined);

        // While the bomb goes off: the neighbour sandbox runs a command.
        await waitFor(async () => settled || (await fs.readFile(results, "utf8")).includes(`START ${bomb}`), {
          timeoutMs: 120_000,
          intervalMs: 200,
          what: `the ${bomb} to start`,
        });
        const during = await execIn(
          t.docker,
          neighbourId,
          ["/bin/sh", "-c", "echo neighbour-alive"],
          `${TEST_UID}:${TEST_UID}`,
        );
        assert.equal(during.exitCode, 0, during.stderr);
        assert.equal(during.stdout.trim(), "neighbour-alive");

        const result = await turn;
        const seconds = (Date.now() - started) / 1000;
        const written = await fs.readFile(results, "utf8").catch(() => "");
        console.log(
          `--- runsc ${bomb} (turn ${seconds.toFixed(1)} s): ${result.status} ${JSON.stringify(result.error)}\n${written.trimEnd()}`,
        );
        // The bomb's turn ended by the sandbox's death, not by its timeout, and said so.
        assertNotStalled(result, `the ${bomb} turn`);
        assert.equal(result.status, "failed", JSON.stringify(result.error));
        assert.equal(result.error?.code, "container_died", JSON.stringify(result.error));
        assert.ok(
          seconds * 1000 < BOMB_TURN_TIMEOUT_MS - 30_000,
          `the turn ended in ${seconds.toFixed(1)} s, well before its ${BOMB_TURN_TIMEOUT_MS / 1000} s timeout`,
        );
        const dead = (await t.docker.getContainer(containerId).inspect()).State;
        assert.equal(dead.Running, false, "the bombed sandbox is down");

        // The host: the sidecar answers, and nothing of the dead sandbox runs (shim, gofer, sandbox, stubs).
        const health = await t.sidecar.service.health();
        assert.equal(health.docker.reachable, true);
        console.log(
          `host processes naming the sandbox: ${hostBefore.length} before the bomb (${hostBefore.map((l) => l.split(" ")[1]?.split("/").at(-1)).join(", ")})`,
        );
        await waitFor(async () => (await hostProcessesOf(containerId)).length === 0, {
          timeoutMs: 30_000,
          intervalMs: 250,
          what: `no host process naming ${containerId}`,
        }).catch(async (error: unknown) => {
          throw new Error(`host processes of the dead sandbox: ${(await hostProcessesOf(containerId)).join(" | ")}`, {
            cause: error,
          });
        });

        // The neighbour was never restarted and still runs commands.
        const neighbourAfter = await t.docker.getContainer(neighbourId).inspect();
        assert.equal(neighbourAfter.State.Running, true);
        assert.equal(
          neighbourAfter.State.StartedAt,
          neighbourBefore.State.StartedAt,
          "the neighbour was not restarted",
        );
        assert.equal(neighbourAfter.RestartCount, neighbourBefore.RestartCount);
        assert.equal((await execIn(t.docker, neighbourId, ["/bin/true"], `${TEST_UID}:${TEST_UID}`)).exitCode, 0);

        // The next ensure brings the workspace back (the dead container started again), and a command turn works.
        const again = await t.sidecar.service.ensureWorkspace(ws);
        assert.equal(again.state, "running");
        assert.ok((await hostProcessesOf(again.containerId)).length > 0, "the sandbox runs again");
        const restarted = (await t.docker.getContainer(again.containerId).inspect()).State;
        assert.equal(restarted.Running, true);
        assert.notEqual(restarted.StartedAt, startedBefore, "a fresh sandbox, not the dead one");
        stub.reset();
        stub.script({ kind: "command", cmd: "echo back-after-the-bomb" }, { kind: "message", text: "back" });
        const next = await t.sidecar.service.runTurn(
          { workspaceId: ws.workspaceId, input: "are you back", options: { timeoutMs: 120_000 } },
          { onEvent: () => undefined },
        );
        assertNotStalled(next, "the turn after the bomb");
        assert.equal(next.status, "completed", JSON.stringify(next.error));
        assert.match(functionCallOutput(stub.requests[1]!) ?? "", /back-after-the-bomb/);
        await t.sidecar.service.removeWorkspace({ workspaceId: neighbour.workspaceId });
        await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId });
      }));
  }
});
