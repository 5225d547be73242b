/**
 * The stall watch against the real engine and the real codex (docs/runtimes.md): a stall is injected, not
 * waited for. While the turn's command runs, the test stops codex (SIGSTOP, from an exec as the
 * workspace's user), then lets the command end; its bash exits and sits as a zombie under codex, which is what
 * gVisor's lost wake-up leaves (bench/runsc-stall.ts found it in every stall). The watch sees the
 * missed exit and ends the turn failed/sandbox_stalled: the log says so once with the sandbox's processes (and under runsc the
 * Sentry's stacks), the metric counts it, the container is stopped, and the next turn runs in a
 * fresh sandbox with HOME kept. Under runc with ALIVE_CODEX_STALL_WATCH=all, under runsc by default.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { TurnHooks, TurnResult } from "../../src/service.js";
import { PROC_LIST_SCRIPT } from "../../src/docker/gvisor.js";
import { parseProcList } from "../../src/codex/stall-watch.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { TEST_GID, TEST_UID, execIn, startTestSidecar, type TestSidecar } from "../support/sidecar.js";
import { assertNotStalled, retryOnSandboxStall } from "../support/stall-retry.js";
import { waitFor } from "../support/wait.js";

const TURN_TIMEOUT_MS = 180_000;

describe("the stall watch ends a turn whose codex never reaps its child (injected)", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;

  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    t = await startTestSidecar({ stub, flags: { "--stall-watch": "all", "--metrics-listen": "127.0.0.1:0" } });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });

  async function metric(name: string): Promise<string> {
    const address = t.sidecar.metricsAddress;
    assert.ok(address);
    const text = await (await fetch(`http://${address.host}:${address.port}/metrics`)).text();
    return text
      .split("\n")
      .filter((line) => line.startsWith(name))
      .join("\n");
  }

  for (const runtime of ["runc", "runsc"] as const) {
    test(`${runtime}: codex stopped while its command runs: failed/sandbox_stalled with the sandbox in the log, counted, container restarted, next turn fine`, async () => {
      const ws = await t.workspace(undefined, { runtime });
      const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
      await fs.writeFile(path.join(ws.workspacePath, "kept.txt"), "kept\n");
      stub.reset();
      // The command ends only once the test lets it (after codex is stopped), so its bash always exits unreaped.
      stub.script(
        { kind: "command", cmd: "while [ ! -e release ]; do sleep 0.2; done; echo released" },
        { kind: "message", text: "never reached" },
      );
      const seen: string[] = [];
      const hooks: TurnHooks = {
        onEvent: (_t, _s, event) => void seen.push("item" in event ? `${event.type}:${event.item.type}` : event.type),
      };
      const started = Date.now();
      const turn: Promise<TurnResult> = t.sidecar.service.runTurn(
        { workspaceId: ws.workspaceId, input: "sleep a little", options: { timeoutMs: TURN_TIMEOUT_MS } },
        hooks,
      );
      await waitFor(() => seen.includes("item.started:command_execution"), {
        timeoutMs: 120_000,
        what: "the command to start",
      });
      const user = `${TEST_UID}:${TEST_GID}`;
      const codex = parseProcList(
        (await execIn(t.docker, containerId, ["/bin/sh", "-c", PROC_LIST_SCRIPT], user)).stdout,
      ).find((p) => p.ppid === 0 && p.comm === "codex");
      assert.ok(codex, "codex runs in the sandbox");
      const stop = await execIn(t.docker, containerId, ["/bin/sh", "-c", `kill -STOP ${codex.pid}`], user);
      assert.equal(stop.exitCode, 0, `kill -STOP ${codex.pid}: ${stop.stdout}${stop.stderr}`);
      await fs.writeFile(path.join(ws.workspacePath, "release"), "");
      const stalledBefore = await metric("alive_codex_sandbox_stalls_total");

      const result = await turn;
      const seconds = (Date.now() - started) / 1000;
      const looks = t.logLines.filter((line) => line.includes(result.turnId) && line.includes("stall watch"));
      assert.equal(result.status, "failed", `${JSON.stringify(result.error)}; the watch's looks:\n${looks.join("\n")}`);
      assert.equal(result.error?.code, "sandbox_stalled");
      assert.match(
        result.error?.message ?? "",
        new RegExp(`codex \\(pid ${codex.pid}\\) has not reaped its exited child \\d+ for 10 s`),
      );
      assert.ok(
        seconds < 90,
        `the verdict came within the watch's bound, long before the turn's deadline (${seconds.toFixed(1)} s)`,
      );
      assert.ok(!seen.includes("item.completed:command_execution"), "codex never saw its command end");

      const warnings = t.logLines.filter((line) => line.includes(result.turnId));
      const verdicts = warnings.filter((line) => line.includes("the turn's sandbox stalled"));
      assert.equal(verdicts.length, 1, "the verdict is logged once");
      const diagnostics = String((JSON.parse(verdicts[0] as string) as { diagnostics?: unknown }).diagnostics);
      assert.match(
        diagnostics,
        new RegExp(`\\n\\d+ ${codex.pid} Z \\d+ bash \\|`),
        "the listing shows the zombie under codex",
      );
      if (runtime === "runsc") {
        assert.match(diagnostics, /runsc debug --stacks [0-9a-f]{12}:\n/);
        assert.match(diagnostics, /goroutine \d+ \[/, "the Sentry's goroutine stacks");
      }
      const stalledAfter = await metric("alive_codex_sandbox_stalls_total");
      assert.equal(
        Number(/ (\d+)$/.exec(stalledAfter)?.[1]),
        Number(/ (\d+)$/.exec(stalledBefore)?.[1]) + 1,
        `the stall was counted: ${stalledBefore} -> ${stalledAfter}`,
      );
      assert.match(await metric('alive_codex_turns_total{status="failed",error_code="sandbox_stalled"}'), /} [1-9]/);

      // The stalled sandbox was stopped; the next turn starts it afresh, with the workspace's files and HOME.
      await waitFor(async () => !(await t.docker.getContainer(containerId).inspect()).State.Running, {
        timeoutMs: 30_000,
        what: "the stalled container to be stopped",
      });
      // Under runsc this turn can meet gVisor's own random stall (a real one, not the injected): once more.
      const next = await retryOnSandboxStall(`${runtime}: the turn after the injected stall`, async () => {
        stub.reset();
        stub.script({ kind: "command", cmd: "cat kept.txt" }, { kind: "message", text: "fresh sandbox" });
        const again = await t.sidecar.service.runTurn(
          { workspaceId: ws.workspaceId, input: "again", options: { timeoutMs: TURN_TIMEOUT_MS } },
          { onEvent: () => undefined },
        );
        assertNotStalled(again, "the turn after the injected stall");
        return again;
      });
      assert.equal(next.status, "completed", JSON.stringify(next.error));
      assert.equal(next.finalResponse, "fresh sandbox");
      assert.match(
        next.items.map((item) => (item.type === "command_execution" ? item.aggregated_output : "")).join(""),
        /kept/,
      );
      const info = await t.docker.getContainer(containerId).inspect();
      assert.ok(info.State.Running, "the same container, started again");
      assert.equal(info.HostConfig.Runtime, runtime);
    });
  }
});
