/** Codex turns in workspace containers: the real codex binary against a scripted model on the bridge. */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { ThreadEvent } from "@openai/codex-sdk";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import type { RunTurnParams, TurnHooks, TurnResult } from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { ResponsesStub, functionCallOutput, inputMessages, lastUserMessageText } from "../support/responses-stub.js";
import { MCP_ENV_SERVER_SOURCE } from "../support/mcp-env-server.js";
import {
  TEST_API_KEY,
  TEST_UID,
  startGatewayStub,
  startTestSidecar,
  turnProcesses,
  type TestSidecar,
} from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

type AnyEvent = Parameters<TurnHooks["onEvent"]>[2];

interface Recorded {
  events: Array<{ seq: number; event: AnyEvent }>;
  hooks: TurnHooks;
}

function recorder(signal?: AbortSignal): Recorded {
  const events: Recorded["events"] = [];
  return {
    events,
    hooks: { onEvent: (_turnId, seq, event) => events.push({ seq, event }), ...(signal ? { signal } : {}) },
  };
}

describe("codex turns in the workspace container", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  before(async () => {
    stub = await startGatewayStub();
    t = await startTestSidecar({ stub });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });
  beforeEach(() => stub.reset());

  const run = (params: RunTurnParams, hooks: TurnHooks = recorder().hooks): Promise<TurnResult> =>
    t.sidecar.service.runTurn(params, hooks);

  test("a plain message turn streams events in order, the first before codex starts", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "message", text: "hello from the model" });
    const rec = recorder();
    const result = await run({ workspaceId: ws.workspaceId, turnId: "turn-plain-1", input: "say hello" }, rec.hooks);
    assert.equal(result.status, "completed");
    assert.equal(result.turnId, "turn-plain-1");
    assert.equal(result.finalResponse, "hello from the model");
    assert.ok(result.usage && result.usage.output_tokens > 0);
    assert.deepEqual(
      rec.events.map((e) => e.seq),
      rec.events.map((_e, i) => i),
      "seq counts from 0 without gaps",
    );
    assert.equal(rec.events[0]?.event.type, "sidecar.turn.accepted");
    const types = rec.events.map((e) => e.event.type);
    assert.ok(types.indexOf("thread.started") > 0 && types.at(-1) === "turn.completed", types.join(","));
    assert.equal(stub.requests.length, 1);
    assert.equal(stub.requests[0]?.headers.authorization, `Bearer ${TEST_API_KEY}`, "codex had its key");
    assert.equal(lastUserMessageText(stub.requests[0]!), "say hello");
  });

  test("a command the model runs writes a file on the host owned by the workspace uid; the key never reaches it", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script(
      {
        kind: "command",
        cmd: "echo made-by-codex > made.txt; env; cat /proc/self/environ | tr '\\0' '\\n'; echo ppid-env; { tr '\\0' '\\n' < /proc/$PPID/environ; } 2>&1; echo end",
      },
      { kind: "message", text: "done" },
    );
    const result = await run({ workspaceId: ws.workspaceId, input: "make a file" });
    assert.equal(result.status, "completed");
    const file = path.join(ws.workspacePath, "made.txt");
    assert.equal((await fs.readFile(file, "utf8")).trim(), "made-by-codex");
    assert.equal((await fs.stat(file)).uid, TEST_UID);
    const output = functionCallOutput(stub.requests[1]!) ?? "";
    assert.match(output, /ALIVE_WORKSPACE_ID=/, "the command's env was printed");
    const [own = "", parent = ""] = output.split("ppid-env");
    assert.doesNotMatch(own, /CODEX_API_KEY/, "commands do not inherit codex's credential");
    assert.ok(!output.includes(TEST_API_KEY), "the key is absent from what codex posts back to the model");
    // codex is an ordinary (dumpable) process since the image runs under gVisor too: its environ
    // holds the turn's own credential at most, never the model key (docs/security.md).
    for (const line of parent.split("\n").filter((l) => l.startsWith("CODEX_API_KEY=")))
      assert.match(line, /^CODEX_API_KEY=alive-turn-/);
    const command = result.items.find((i) => i.type === "command_execution");
    assert.equal(command?.type === "command_execution" ? command.exit_code : undefined, 0);
  });

  test("a second turn resumes the thread, also after the container was re-created and the sidecar restarted", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "message", text: "first answer" });
    const first = await run({ workspaceId: ws.workspaceId, input: "first question" });
    assert.equal(first.status, "completed");
    assert.ok(first.threadId);

    stub.script({ kind: "message", text: "second answer" });
    const second = await run({ workspaceId: ws.workspaceId, threadId: first.threadId!, input: "second question" });
    assert.equal(second.status, "completed");
    assert.equal(second.threadId, first.threadId);
    assert.ok(first.usage && second.usage && second.turnUsage);
    assert.equal(
      second.turnUsage.input_tokens,
      second.usage.input_tokens - first.usage.input_tokens,
      "turnUsage is this turn's share of the thread's cumulative usage",
    );
    const history = inputMessages(stub.requests[1]!)
      .map((m) => m.text)
      .join("\n");
    assert.match(history, /first question/);
    assert.match(history, /first answer/);

    // Container removed (HOME kept) and re-created: the thread lives in HOME/.codex/sessions.
    const before = (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId)!;
    await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId });
    const recreated = await t.sidecar.service.ensureWorkspace(ws);
    assert.notEqual(recreated.containerId, before.containerId);
    stub.script({ kind: "message", text: "third answer" });
    const third = await run({ workspaceId: ws.workspaceId, threadId: first.threadId!, input: "third question" });
    assert.equal(third.status, "completed");
    assert.match(
      inputMessages(stub.requests[2]!)
        .map((m) => m.text)
        .join("\n"),
      /second answer/,
    );

    // A restarted sidecar adopts the container and resumes the same thread.
    await t.stop();
    const restarted = await startTestSidecar({ stub, reuse: t });
    t = restarted;
    stub.script({ kind: "message", text: "fourth answer" });
    const fourth = await run({ workspaceId: ws.workspaceId, threadId: first.threadId!, input: "fourth question" });
    assert.equal(fourth.status, "completed");
    assert.equal(fourth.threadId, first.threadId);
    assert.match(
      inputMessages(stub.requests[3]!)
        .map((m) => m.text)
        .join("\n"),
      /third answer/,
    );
  });

  test("a threadId that is not a UUID, or names no thread, is refused before codex runs", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    await assert.rejects(
      run({ workspaceId: ws.workspaceId, threadId: "my-thread", input: "x" }),
      (e: SidecarError) => e.code === ErrorCode.invalidParams && e.data?.field === "threadId",
    );
    await assert.rejects(
      run({ workspaceId: ws.workspaceId, threadId: "01a20197-e6c2-7350-861b-7d7d45fbf148", input: "x" }),
      (e: SidecarError) => e.code === ErrorCode.invalidParams && /no thread/.test(e.message),
    );
    assert.equal(stub.requests.length, 0);
  });

  test("cancel during a long command leaves no process of the turn; another workspace's turn is untouched", async () => {
    const a = await t.workspace();
    const b = await t.workspace();
    const ca = await t.sidecar.service.ensureWorkspace(a);
    await t.sidecar.service.ensureWorkspace(b);
    stub.respondWith((request) => {
      const text = JSON.stringify(request.body);
      const hasOutput = text.includes("function_call_output");
      if (text.includes("long job"))
        return hasOutput
          ? { kind: "message", text: "never" }
          : {
              kind: "command",
              cmd: "(setsid sleep 1001 </dev/null >/dev/null 2>&1 &); nohup sleep 1002 </dev/null >/dev/null 2>&1 & sh -c 'sleep 1003' & sleep 1000",
            };
      if (text.includes("short job"))
        return hasOutput ? { kind: "message", text: "b finished" } : { kind: "command", cmd: "sleep 2; echo b-ok" };
      return undefined;
    });
    const recA = recorder();
    const turnA = run({ workspaceId: a.workspaceId, turnId: "turn-cancel-a", input: "long job" }, recA.hooks);
    const turnB = run({ workspaceId: b.workspaceId, input: "short job" });
    await waitFor(() => recA.events.some((e) => e.event.type === "item.started"), {
      timeoutMs: 20_000,
      what: "the long command to start",
    });
    await waitFor(async () => (await turnProcesses(t.docker, ca.containerId)).some((p) => /sleep 1001/.test(p)), {
      timeoutMs: 10_000,
      what: "the setsid'd sleep to exist",
    });
    const cancelledAt = Date.now();
    assert.deepEqual(await t.sidecar.service.cancelTurn({ turnId: "turn-cancel-a" }), { cancelled: true });
    const resultA = await turnA;
    assert.equal(resultA.status, "cancelled");
    assert.equal(resultA.error?.code, "cancelled");
    // The turn's sleeps would last 1000 s: they are gone within seconds of the cancel. How fast
    // (the ≤ 1 s target) is the bench's cancel-to-clean row, not a timed test: this one must hold
    // on a loaded 2-core machine too.
    await waitFor(async () => (await turnProcesses(t.docker, ca.containerId)).length === 0, {
      timeoutMs: 10_000,
      what: "no process of the cancelled turn in the container",
    }).catch(async (error: Error) => {
      throw new Error(`${error.message}; left: ${JSON.stringify(await turnProcesses(t.docker, ca.containerId))}`);
    });
    assert.ok(Date.now() - cancelledAt < 15_000);
    const resultB = await turnB;
    assert.equal(resultB.status, "completed");
    assert.equal(resultB.finalResponse, "b finished");
    await assert.rejects(
      t.sidecar.service.cancelTurn({ turnId: "turn-cancel-a" }),
      (e: SidecarError) => e.code === ErrorCode.unknownTurn,
    );
  });

  test("a turn past its deadline is timed_out and its codex is gone", async () => {
    const ws = await t.workspace();
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "hang" });
    const started = Date.now();
    const result = await run({ workspaceId: ws.workspaceId, input: "hang please", options: { timeoutMs: 3000 } });
    assert.equal(result.status, "timed_out");
    assert.equal(result.error?.code, "timed_out");
    assert.ok(Date.now() - started < 20_000);
    await waitFor(async () => (await turnProcesses(t.docker, containerId)).length === 0, {
      timeoutMs: 10_000,
      what: "codex to be gone",
    });
  });

  test("a second turn for a busy workspace gets -32003 at once", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "hang" });
    const rec = recorder();
    const first = run({ workspaceId: ws.workspaceId, turnId: "turn-busy-1", input: "hang" }, rec.hooks);
    await waitFor(() => rec.events.length > 0, { timeoutMs: 5000, what: "the first turn to start" });
    await assert.rejects(
      run({ workspaceId: ws.workspaceId, input: "again" }),
      (e: SidecarError) => e.code === ErrorCode.workspaceBusy,
    );
    const listed = (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId);
    assert.equal(listed?.activeTurnId, "turn-busy-1");
    await t.sidecar.service.cancelTurn({ turnId: "turn-busy-1" });
    assert.equal((await first).status, "cancelled");
  });

  test("an MCP server's tool call works under approval never, with its env on top of the session env", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    const server = path.join(ws.workspacePath, "env-server.cjs");
    await fs.writeFile(server, MCP_ENV_SERVER_SOURCE);
    // MCP tools are not offered in codex's first request (they come through tool_search once the
    // server is up): like a model that retries, call the tool until it answers, within a bound.
    let attempts = 0;
    stub.respondWith((request) => {
      const output = functionCallOutput(request as Parameters<typeof functionCallOutput>[0]) ?? "";
      if (output.includes("ENV-JSON")) return { kind: "message", text: "tool done" };
      attempts += 1;
      return attempts <= 200
        ? { kind: "tool", namespace: "mcp__alive", name: "env", arguments: {}, callId: `call_env_${attempts}` }
        : { kind: "message", text: "gave up" };
    });
    const result = await run({
      workspaceId: ws.workspaceId,
      input: "call the tool",
      mcpServers: {
        alive: {
          command: "node",
          args: [server],
          env: { EXTRA_FROM_SPEC: "spec-value", ALIVE_USER_ID: "overridden-by-spec" },
        },
      },
    });
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    assert.equal(result.finalResponse, "tool done");
    const output = functionCallOutput(stub.requests.at(-1)!) ?? "";
    const json = /ENV-JSON:(\{.*?\})(?:"|\\n|$)/.exec(output.replace(/\\"/g, '"'));
    assert.ok(json, `tool output: ${output.slice(0, 500)}`);
    const env = JSON.parse(json[1]!) as Record<string, string>;
    assert.equal(env.ALIVE_WORKSPACE_ID, ws.workspaceId, "the ALIVE_* context reaches the server");
    assert.equal(env.ALIVE_WORKSPACE_PATH, ws.workspacePath);
    assert.equal(env.EXTRA_FROM_SPEC, "spec-value", "the spec's env is added");
    assert.equal(env.ALIVE_USER_ID, "overridden-by-spec", "the spec's env wins over the session env");
    assert.equal(env.HOME, "/home/alive");
    assert.equal(env.CODEX_API_KEY, undefined, "codex's key is codex's alone");
  });

  test("turn.failed from the model is a failed result with the model's message", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "fail", code: "insufficient_quota", message: "You exceeded your current quota" });
    const result = await run({ workspaceId: ws.workspaceId, input: "x" });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "model_error");
    assert.match(result.error?.message ?? "", /quota/i);
  });

  test("a container that dies mid-turn fails the turn with a message that says so", async () => {
    const ws = await t.workspace();
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "command", cmd: "sleep 1000" });
    const rec = recorder();
    const turn = run({ workspaceId: ws.workspaceId, input: "long", options: { timeoutMs: 60_000 } }, rec.hooks);
    await waitFor(() => rec.events.some((e) => e.event.type === "item.started"), {
      timeoutMs: 20_000,
      what: "the command to start",
    });
    await t.docker.getContainer(containerId).kill();
    const result = await turn;
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "container_died");
    assert.match(result.error?.message ?? "", /workspace container stopped/);
    // The next turn starts the container again.
    stub.script({ kind: "message", text: "back" });
    assert.equal((await run({ workspaceId: ws.workspaceId, input: "again" })).status, "completed");
  });

  test("two workspaces run turns at the same time without crossing", async () => {
    const a = await t.workspace();
    const b = await t.workspace();
    await Promise.all([t.sidecar.service.ensureWorkspace(a), t.sidecar.service.ensureWorkspace(b)]);
    stub.respondWith((request) => {
      const text = JSON.stringify(request.body);
      const who = text.includes("I am A") ? "A" : text.includes("I am B") ? "B" : null;
      if (who === null) return undefined;
      if (!text.includes("function_call_output"))
        return { kind: "command", cmd: `echo ${who} > who.txt; sleep 1; cat who.txt; ls ..` };
      return { kind: "message", text: `${who} done` };
    });
    const [ra, rb] = await Promise.all([
      run({ workspaceId: a.workspaceId, input: "I am A" }),
      run({ workspaceId: b.workspaceId, input: "I am B" }),
    ]);
    assert.equal(ra.finalResponse, "A done");
    assert.equal(rb.finalResponse, "B done");
    assert.notEqual(ra.threadId, rb.threadId);
    assert.equal((await fs.readFile(path.join(a.workspacePath, "who.txt"), "utf8")).trim(), "A");
    assert.equal((await fs.readFile(path.join(b.workspacePath, "who.txt"), "utf8")).trim(), "B");
    const outA = ra.items.find((i) => i.type === "command_execution");
    assert.ok(
      outA?.type === "command_execution" && !outA.aggregated_output.includes(path.basename(b.workspacePath)),
      "A cannot list B's workspace",
    );
  });

  test("docker logs shows each turn's start and end and codex's stderr, with timestamps", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "message", text: "logged" });
    const result = await run({ workspaceId: ws.workspaceId, turnId: "turn-logged", input: "x" });
    // The log travels FIFO -> the container's log pump -> the engine's log driver: wait for it.
    const finished = new RegExp(`turn=turn-logged thread=${result.threadId} event=finished status=completed`);
    const logs = await waitFor(
      async () => {
        const current = (await t.sidecar.service.workspaceLogs({ workspaceId: ws.workspaceId })).logs;
        return finished.test(current) ? current : null;
      },
      { timeoutMs: 5000, what: "the turn's end in docker logs" },
    );
    assert.match(
      logs,
      /^\d{4}-\d\d-\d\dT\S+Z turn=turn-logged thread=new event=started$/m,
      "one timestamp per line, the engine's",
    );
    assert.match(logs, /turn=turn-logged codex: /);
    assert.ok(!logs.includes(TEST_API_KEY));
    assert.ok(!t.logLines.join("\n").includes(TEST_API_KEY), "no secret in the sidecar's own log");
  });

  test("an output schema reaches codex through the root-owned run dir, never TMPDIR, and its file is cleaned up", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "message", text: '{"answer":"42"}' });
    const schema = {
      type: "object",
      properties: { answer: { type: "string" } },
      required: ["answer"],
      additionalProperties: false,
    };
    const result = await run({ workspaceId: ws.workspaceId, input: "answer", options: { outputSchema: schema } });
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    assert.match(JSON.stringify(stub.requests[0]?.body.text ?? {}), /"answer"/, "the schema went to the model");
    const paths = workspacePaths(t.stateDir, ws.workspaceId);
    assert.deepEqual(await fs.readdir(paths.turnFiles), [], "the turn's schema file is gone");
    assert.deepEqual(
      (await fs.readdir(paths.tmp)).filter((n) => n.startsWith(".alive-turn-")),
      [],
      "nothing of root's in TMPDIR",
    );
  });

  // workspace-write is enforced by the container instead (egress.test.ts).
  test("codex's own read-only sandbox fails with a clear reason instead of failing every command", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    for (const sandboxMode of ["read-only"] as const) {
      await assert.rejects(
        run({ workspaceId: ws.workspaceId, input: "x", options: { sandboxMode } }),
        (e: SidecarError) => {
          assert.equal(e.code, ErrorCode.notAllowed);
          assert.equal(e.data?.field, "options.sandboxMode");
          assert.match(String(e.data?.reason), /user namespaces/);
          return true;
        },
      );
    }
    assert.equal(stub.requests.length, 0);
  });

  test("a local image outside the workspace is refused", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    await assert.rejects(
      run({
        workspaceId: ws.workspaceId,
        input: [
          { type: "text", text: "look" },
          { type: "local_image", path: "/etc/shadow" },
        ],
      }),
      (e: SidecarError) => e.code === ErrorCode.notAllowed,
    );
  });

  test("a refused turn.run that carries the workspace fields makes no workspace", async () => {
    const ws = await t.workspace();
    await assert.rejects(
      run({ workspaceId: ws.workspaceId, workspace: ws, input: [{ type: "local_image", path: "/etc/passwd" }] }),
      (e: SidecarError) => e.code === ErrorCode.notAllowed,
    );
    await assert.rejects(
      run({ workspaceId: ws.workspaceId, workspace: ws, threadId: "01a20197-e6c2-7350-861b-7d7d45fbf148", input: "x" }),
      (e: SidecarError) => e.code === ErrorCode.invalidParams,
    );
    const made = await t.docker.listContainers({
      all: true,
      filters: { label: [`dev.alive.codex.workspace-id=${ws.workspaceId}`] },
    });
    assert.deepEqual(made, []);
    await assert.rejects(fs.stat(workspacePaths(t.stateDir, ws.workspaceId).root));
    // The same call with good input ensures the workspace and runs the turn.
    stub.script({ kind: "message", text: "made and ran" });
    const result = await run({ workspaceId: ws.workspaceId, workspace: ws, input: "x" });
    assert.equal(result.finalResponse, "made and ran");
  });

  test("events are the SDK's ThreadEvents as codex emitted them", async () => {
    const ws = await t.workspace();
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script({ kind: "command", cmd: "echo out" }, { kind: "message", text: "fine" });
    const rec = recorder();
    await run({ workspaceId: ws.workspaceId, input: "x" }, rec.hooks);
    const completed = rec.events
      .map((e) => e.event)
      .filter((e): e is Extract<ThreadEvent, { type: "item.completed" }> => e.type === "item.completed");
    const command = completed.find((e) => e.item.type === "command_execution");
    assert.ok(command && command.item.type === "command_execution" && command.item.aggregated_output.includes("out"));
  });
});
