/**
 * A workspace under gVisor (runtime "runsc"): the whole turn path against the real engine and the
 * real codex, with the scripted model on the host's loopback behind the sidecar's model proxy.
 * Ensure, a command turn, resume, cancel (nothing left), an MCP server, the egress policy (a refused
 * CONNECT and an allowed internal destination) and `docker logs`; a runtime the operator does not
 * allow or the engine does not have makes nothing; a changed runtime replaces the idle container.
 *
 * Needs runsc registered with the engine (scripts/install-runsc.sh). runsc on the ptrace platform
 * is slow: each turn here takes seconds, so the file keeps to one sidecar and few turns.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import http from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { Labels } from "../../src/docker/labels.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import type { RunTurnParams, TurnHooks, TurnResult, WorkspaceSummary } from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { MCP_ENV_SERVER_SOURCE } from "../support/mcp-env-server.js";
import { ResponsesStub, functionCallOutput, inputMessages } from "../support/responses-stub.js";
import {
  TEST_API_KEY,
  containerProcesses,
  execIn,
  startTestSidecar,
  turnProcesses,
  uniqueId,
  type TestSidecar,
} from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";
import { SandboxStalled, assertNotStalled, retryOnSandboxStall } from "../support/stall-retry.js";

/** runsc with ptrace on a loaded 2-core machine: a turn with a command can take tens of seconds. */
const TURN_TIMEOUT_MS = 120_000;
/** A command starts within a few seconds even on a loaded machine; past this, the sandbox is looked at. */
const COMMAND_START_MS = 45_000;
/** A runtime the test allows but no engine has. */
const MISSING_RUNTIME = "alive-test-missing-runtime";

function recorder(): { types: string[]; hooks: TurnHooks } {
  const types: string[] = [];
  return {
    types,
    hooks: {
      onEvent: (_turnId, _seq, event) =>
        types.push(event.type === "item.started" ? `item.started:${event.item.type}` : event.type),
    },
  };
}

function commandOutput(result: TurnResult): string {
  return result.items.map((item) => (item.type === "command_execution" ? item.aggregated_output : "")).join("\n");
}

/** Writes a raw request to the egress proxy's loopback port; prints "PX <label> <status> <refusal> <last line>". */
const PX = [
  "px() (",
  '  exec 3<>/dev/tcp/127.0.0.1/3128 || { echo "PX $1 noproxy"; exit 0; }',
  "  printf '%b' \"$2\" >&3",
  "  resp=$(timeout 15 cat <&3 | tr -d '\\r')",
  "  status=$(printf '%s\\n' \"$resp\" | head -n1 | cut -d' ' -f2)",
  "  refused=$(printf '%s\\n' \"$resp\" | sed -n 's/^x-alive-egress-refused: //Ip' | head -n1)",
  '  echo "PX $1 $status ${refused:-none} $(printf \'%s\\n\' "$resp" | tail -n1)"',
  ")",
].join("\n");

async function summaryOf(t: TestSidecar, workspaceId: string): Promise<WorkspaceSummary> {
  const found = (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspaceId);
  assert.ok(found, `workspace ${workspaceId} is listed`);
  return found;
}

describe("a workspace under gVisor (runtime runsc)", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  let internal: http.Server;
  let internalPort: number;
  const internalRequests: string[] = [];

  before(async () => {
    const info = (await import("../../src/docker/engine.js")).createDockerClient("unix:///var/run/docker.sock");
    const runtimes = Object.keys(((await info.info()) as { Runtimes?: Record<string, unknown> }).Runtimes ?? {});
    assert.ok(
      runtimes.includes("runsc"),
      `the engine lists runsc (scripts/install-runsc.sh registers it); it lists ${runtimes.join(", ")}`,
    );
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    internal = http.createServer((req, res) => {
      internalRequests.push(req.url ?? "");
      res.end(`internal-ok ${req.url ?? ""}`);
    });
    await new Promise<void>((resolve) => internal.listen(0, "127.0.0.1", resolve));
    internalPort = (internal.address() as AddressInfo).port;
    t = await startTestSidecar({
      stub,
      flags: {
        "--runtimes": `runc,runsc,${MISSING_RUNTIME}`,
        "--internal-destinations": `http://127.0.0.1:${internalPort}`,
      },
    });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
    internal?.closeAllConnections();
    await new Promise((resolve) => internal?.close(resolve));
  });
  beforeEach(() => stub.reset());

  /** A turn; one the stall watch ended sandbox_stalled throws SandboxStalled, and the test's attempt runs once more (stall-retry.ts). */
  const run = async (params: RunTurnParams, hooks: TurnHooks = recorder().hooks): Promise<TurnResult> => {
    const result = await t.sidecar.service.runTurn(
      { ...params, options: { timeoutMs: TURN_TIMEOUT_MS, ...params.options } },
      hooks,
    );
    assertNotStalled(result, `turn ${result.turnId}`);
    return result;
  };

  test("a runtime off the allowlist or unknown to the engine is -32006 naming it and the allowed ones, and makes nothing", async () => {
    for (const [runtime, pattern] of [
      ["io.containerd.runc.v2", /not allowed: the operator allows runc, runsc, alive-test-missing-runtime/],
      ["kata", /the operator allows/],
      [MISSING_RUNTIME, /not registered with the Docker engine, which lists .*runsc/],
    ] as const) {
      const ws = await t.workspace(uniqueId("refused"), { runtime });
      await assert.rejects(t.sidecar.service.ensureWorkspace(ws), (error: unknown) => {
        assert.ok(error instanceof SidecarError, String(error));
        assert.equal(error.code, ErrorCode.notAllowed);
        assert.equal(error.data?.field, "runtime");
        assert.match(error.message, new RegExp(`"${runtime.replace(/\./g, "\\.")}"`));
        assert.match(error.message, pattern);
        assert.deepEqual(error.data?.allowed, ["runc", "runsc"], "the allowed runtimes the engine has");
        return true;
      });
      const made = await t.docker.listContainers({
        all: true,
        filters: { label: [`${Labels.workspaceId}=${ws.workspaceId}`] },
      });
      assert.deepEqual(made, [], "no container");
      await assert.rejects(
        fs.stat(workspacePaths(t.stateDir, ws.workspaceId).root),
        { code: "ENOENT" },
        "no host dirs",
      );
      assert.equal(
        (await t.sidecar.service.listWorkspaces()).workspaces.some((w) => w.workspaceId === ws.workspaceId),
        false,
      );
    }
  });

  test("ensure, a command turn, a resumed turn and docker logs, inside gVisor", () =>
    retryOnSandboxStall("runsc: command, resume, docker logs", async () => {
      stub.reset();
      const ws = await t.workspace(uniqueId("gv"), { runtime: "runsc" });
      const ensured = await t.sidecar.service.ensureWorkspace(ws);
      const inspect = await t.docker.getContainer(ensured.containerId).inspect();
      assert.equal(inspect.HostConfig.Runtime, "runsc");
      assert.equal(inspect.Config.Labels[Labels.runtime], "runsc");
      assert.equal(inspect.HostConfig.PidsLimit, 512 * 16, "the pids cgroup holds gVisor's host tasks too");
      assert.equal((await summaryOf(t, ws.workspaceId)).runtime, "runsc");
      // gVisor's own kernel answers, not the host's.
      const dmesg = await execIn(t.docker, ensured.containerId, ["/bin/sh", "-c", "dmesg 2>&1 | head -n 3"]);
      assert.match(dmesg.stdout, /gVisor/i, dmesg.stdout + dmesg.stderr);

      stub.script(
        { kind: "command", cmd: "echo made-in-gvisor > made.txt; id -u; cat made.txt" },
        { kind: "message", text: "first answer" },
      );
      const turnId = uniqueId("turn-gv-1");
      const first = await run({ workspaceId: ws.workspaceId, turnId, input: "first question" });
      assert.equal(first.status, "completed", JSON.stringify(first.error));
      assert.equal(first.finalResponse, "first answer");
      assert.match(commandOutput(first), /made-in-gvisor/);
      const file = path.join(ws.workspacePath, "made.txt");
      assert.equal((await fs.readFile(file, "utf8")).trim(), "made-in-gvisor");
      assert.equal((await fs.stat(file)).uid, ws.uid, "written through the bind mount as the workspace uid");
      assert.equal(
        stub.requests[0]?.headers.authorization,
        `Bearer ${TEST_API_KEY}`,
        "the model proxy swapped in the key",
      );
      assert.ok(first.threadId);
      assert.ok((first.resources.cpuSeconds ?? 0) > 0, "the sandbox's cgroup is metered");

      stub.script({ kind: "message", text: "second answer" });
      const second = await run({ workspaceId: ws.workspaceId, threadId: first.threadId!, input: "second question" });
      assert.equal(second.status, "completed", JSON.stringify(second.error));
      assert.equal(second.threadId, first.threadId);
      const history = inputMessages(stub.requests.at(-1)!)
        .map((m) => m.text)
        .join("\n");
      assert.match(history, /first question/);
      assert.match(history, /first answer/);

      const finished = new RegExp(`turn=${turnId} thread=${first.threadId} event=finished status=completed`);
      const logs = await waitFor(
        async () => {
          const current = (await t.sidecar.service.workspaceLogs({ workspaceId: ws.workspaceId })).logs;
          return finished.test(current) ? current : null;
        },
        { timeoutMs: 10_000, what: "the turn's end in docker logs" },
      );
      assert.match(
        logs,
        new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z turn=${turnId} thread=new event=started$`, "m"),
        "one timestamp per line, the engine's",
      );
      assert.ok(!logs.includes(TEST_API_KEY));
    }));

  test("cancel during a long command leaves no process of the turn in the sandbox", () =>
    retryOnSandboxStall("runsc: cancel", async () => {
      stub.reset();
      const ws = await t.workspace(uniqueId("gvc"), { runtime: "runsc" });
      const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
      stub.script(
        {
          kind: "command",
          cmd: "(setsid sleep 1001 </dev/null >/dev/null 2>&1 &); nohup sleep 1002 </dev/null >/dev/null 2>&1 & sh -c 'sleep 1003' & sleep 1000",
        },
        { kind: "message", text: "never" },
      );
      const rec = recorder();
      const turnId = uniqueId("turn-gv-cancel");
      const turn = run({ workspaceId: ws.workspaceId, turnId, input: "long job" }, rec.hooks);
      // A turn that ends before its command starts (a stall: SandboxStalled) ends the wait at once.
      await Promise.race([
        waitFor(() => rec.types.includes("item.started:command_execution"), {
          timeoutMs: COMMAND_START_MS,
          what: "the long command to start",
        }).catch(async (error: Error) => {
          // Neither a start nor an end: what the sandbox and the sidecar show, for the next reader.
          const list = await containerProcesses(t.docker, containerId).catch(() => null);
          const procs = list ? list.map((p) => `${p.pid}<${p.ppid} ${p.role} ${p.args}`).join("\n") : "(no listing)";
          const lines = t.logLines
            .filter((line) => line.includes(turnId) || line.includes(containerId.slice(0, 12)))
            .slice(-40)
            .join("\n");
          const detail = `${error.message}; events ${JSON.stringify(rec.types)}; sandbox:\n${procs}\nsidecar:\n${lines}`;
          // gVisor's second stall shape (docs/runtimes.md): codex spawned the command's shell but
          // announced nothing, and the shell ran nothing. The stall watch does not catch it (codex
          // reaps nothing late); the turn would end timed_out at its deadline. Stopped here, retried.
          const shell = list?.find((p) => p.role === "turn" && p.args.includes("-lc") && p.args.includes("sleep 1000"));
          const ranNothing = shell !== undefined && !list?.some((p) => p.ppid === shell.pid);
          if (ranNothing) {
            await withTimeout(
              t.sidecar.service.cancelTurn({ turnId }).then(() => turn),
              30_000,
              "the stalled turn's cancel",
            ).catch(() => undefined);
            throw new SandboxStalled(
              `the command's shell (pid ${shell.pid}) ran nothing and codex announced nothing for ${COMMAND_START_MS / 1000} s: ${detail}`,
            );
          }
          throw new Error(detail);
        }),
        turn.then((early) => {
          throw new Error(`the turn ended before its command started: ${early.status} ${JSON.stringify(early.error)}`);
        }),
      ]);
      await waitFor(async () => (await turnProcesses(t.docker, containerId)).some((p) => /sleep 1001/.test(p)), {
        timeoutMs: 30_000,
        what: "the setsid'd sleep to exist",
      });
      assert.deepEqual(await t.sidecar.service.cancelTurn({ turnId }), { cancelled: true });
      const result = await turn;
      assert.equal(result.status, "cancelled");
      await waitFor(async () => (await turnProcesses(t.docker, containerId)).length === 0, {
        timeoutMs: 20_000,
        what: "no process of the cancelled turn in the sandbox",
      }).catch(async (error: Error) => {
        throw new Error(`${error.message}; left: ${JSON.stringify(await turnProcesses(t.docker, containerId))}`);
      });
      // The workspace is usable again: the next turn runs (the cancelled turn's last step was never asked for).
      stub.reset();
      stub.script({ kind: "message", text: "after cancel" });
      assert.equal((await run({ workspaceId: ws.workspaceId, input: "again" })).finalResponse, "after cancel");
    }));

  test("an MCP server's tool call and the egress policy (a refused CONNECT, an allowed internal destination)", () =>
    retryOnSandboxStall("runsc: MCP and egress", async () => {
      stub.reset();
      const ws = await t.workspace(uniqueId("gvm"), {
        runtime: "runsc",
        egress: { allow: ["*.example.test"], deny: ["bad.example.test"] },
      });
      await t.sidecar.service.ensureWorkspace(ws);
      internalRequests.length = 0;
      const server = path.join(ws.workspacePath, "env-server.cjs");
      await fs.writeFile(server, MCP_ENV_SERVER_SOURCE);
      // MCP tools come through tool_search once the server is up: call the tool until it answers, within a bound.
      let attempts = 0;
      stub.respondWith((request) => {
        const output = functionCallOutput(request as Parameters<typeof functionCallOutput>[0]) ?? "";
        if (output.includes("ENV-JSON")) return { kind: "message", text: "tool done" };
        attempts += 1;
        return attempts <= 200
          ? { kind: "tool", namespace: "mcp__alive", name: "env", arguments: {}, callId: `call_env_${attempts}` }
          : { kind: "message", text: "gave up" };
      });
      const mcp = await run({
        workspaceId: ws.workspaceId,
        input: "call the tool",
        mcpServers: { alive: { command: "node", args: [server], env: { EXTRA_FROM_SPEC: "spec-value" } } },
      });
      assert.equal(mcp.status, "completed", JSON.stringify(mcp.error));
      assert.equal(mcp.finalResponse, "tool done");
      const toolOutput = (functionCallOutput(stub.requests.at(-1)!) ?? "").replace(/\\"/g, '"');
      assert.match(toolOutput, /"EXTRA_FROM_SPEC":"spec-value"/);
      assert.match(toolOutput, new RegExp(`"ALIVE_WORKSPACE_ID":"${ws.workspaceId}"`));

      stub.reset();
      const get = `GET http://127.0.0.1:${internalPort}/from-gvisor HTTP/1.1\\r\\nHost: 127.0.0.1:${internalPort}\\r\\nConnection: close\\r\\n\\r\\n`;
      const cmd = [
        PX,
        "px denied 'CONNECT bad.example.test:443 HTTP/1.1\\r\\nHost: bad.example.test:443\\r\\n\\r\\n'",
        `px internal '${get}'`,
      ].join("\n");
      stub.script({ kind: "command", cmd }, { kind: "message", text: "probed" });
      const probed = await run({ workspaceId: ws.workspaceId, input: "probe" });
      assert.equal(probed.status, "completed", JSON.stringify(probed.error));
      const output = commandOutput(probed);
      assert.match(output, /^PX denied 403 denied .*bad\.example\.test/m, output);
      assert.match(output, /^PX internal 200 none internal-ok \/from-gvisor$/m, output);
      assert.deepEqual(internalRequests, ["/from-gvisor"]);
      assert.equal((await summaryOf(t, ws.workspaceId)).network.egressRefusals, 1);
    }));

  test("a changed runtime replaces the idle container, keeping HOME; the same runtime keeps it", async () => {
    const ws = await t.workspace(uniqueId("gvr"), { runtime: "runsc" });
    const first = await t.sidecar.service.ensureWorkspace(ws);
    assert.equal(
      (await t.sidecar.service.ensureWorkspace(ws)).containerId,
      first.containerId,
      "same runtime: same container",
    );
    const home = workspacePaths(t.stateDir, ws.workspaceId).home;
    await fs.writeFile(path.join(home, "kept.txt"), "kept");
    const { runtime: _runtime, ...asRunc } = ws;
    const second = await t.sidecar.service.ensureWorkspace(asRunc);
    assert.notEqual(second.containerId, first.containerId);
    assert.equal(second.created, true);
    assert.equal(
      (await t.docker.getContainer(second.containerId).inspect()).HostConfig.Runtime,
      "runc",
      "the engine's default when none is asked for",
    );
    assert.equal((await summaryOf(t, ws.workspaceId)).runtime, "runc");
    await assert.rejects(
      t.docker.getContainer(first.containerId).inspect(),
      { statusCode: 404 },
      "the runsc container is gone",
    );
    assert.equal(await fs.readFile(path.join(home, "kept.txt"), "utf8"), "kept");
  });
});
