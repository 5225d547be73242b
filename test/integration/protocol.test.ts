/**
 * Protocol conformance over the REAL socket against the REAL service: a sidecar on the real engine
 * and runtime image, codex driven by a scripted model on the test bridge. Every method, every error
 * code, and for every refusal: the right code and error.data.field, the same connection still
 * answers, and nothing was made (no container, no state dir, no bridge, no codex process).
 */
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { isOwnProcess } from "../../src/codex/container-processes.js";
import { ErrorCode } from "../../src/errors.js";
import { sidecarVersion } from "../../src/sidecar.js";
import { SidecarClient } from "../../src/rpc/client.js";
import type {
  EnsureWorkspaceResult,
  HealthResult,
  TurnResult,
  WorkspaceParams,
  WorkspaceSummary,
} from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { containerProcesses, startGatewayStub, testImage, uniqueId, TEST_GID, TEST_UID } from "../support/sidecar.js";
import {
  startRpcHarness,
  type MachineSnapshot,
  type RawConnection,
  type RpcHarness,
  type WireError,
  type WireMessage,
} from "../support/rpc-harness.js";
import { waitFor } from "../support/wait.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ONE_MIB = 1024 * 1024;

function resultOf<T>(reply: WireMessage): T {
  assert.equal(reply.error, undefined, `expected a result, got the error ${JSON.stringify(reply.error)}`);
  assert.ok("result" in reply, `a success response carries "result": ${JSON.stringify(reply)}`);
  assert.equal(reply.jsonrpc, "2.0");
  return reply.result as T;
}

function errorOf(reply: WireMessage): WireError {
  assert.ok(reply.error !== undefined, `expected an error, got ${JSON.stringify(reply).slice(0, 400)}`);
  assert.equal("result" in reply, false, "an error response carries no result");
  assert.equal(reply.jsonrpc, "2.0");
  return reply.error;
}

/** The code, error.data.field (when the refusal is about a field), a reason a person can act on, and no stack on the wire. */
function assertRefused(reply: WireMessage, code: number, field?: string): WireError {
  const error = errorOf(reply);
  assert.equal(error.code, code, `code: ${JSON.stringify(error)}`);
  if (field !== undefined) {
    assert.equal(error.data?.field, field, `error.data.field: ${JSON.stringify(error)}`);
    assert.ok(
      typeof error.data?.reason === "string" && error.data.reason.length > 0,
      `error.data.reason: ${JSON.stringify(error)}`,
    );
  }
  assert.ok(error.message.length > 0);
  assert.doesNotMatch(JSON.stringify(error), /\n\s+at |node_modules|\.js:\d+/, "no stack on the wire");
  return error;
}

/** The connection that got the refusal still answers, and the server still takes new connections. */
async function assertStillServing(h: RpcHarness, conn: RawConnection): Promise<void> {
  const health = resultOf<HealthResult>(await conn.call("sidecar.health"));
  assert.equal(typeof health.version, "string");
  assert.equal(conn.isClosed, false, "the connection stays open");
  const fresh = await SidecarClient.connect(h.socketPath);
  try {
    assert.equal((await fresh.health()).version, health.version);
  } finally {
    await fresh.close();
  }
}

/** Nothing new: same containers, state dirs, bridges and codex processes as before. */
function assertNothingMade(before: MachineSnapshot, after: MachineSnapshot): void {
  assert.deepEqual(after, before, "the refused request left something behind");
}

/**
 * Processes of a turn in a workspace container: everything but the container's own (the init, the
 * main script, the log pump, the forwarders) and the launcher pre-started for the workspace's NEXT
 * turn (it becomes a turn's process only once it execs codex), as src/codex/container-processes.ts
 * tells them; zombies count. Lines are "<pid> <comm> <cmdline>".
 */
async function turnProcesses(h: RpcHarness, containerId: string): Promise<string[]> {
  const processes = await containerProcesses(h.docker, containerId);
  return processes.filter((p) => !isOwnProcess(p)).map((p) => `${p.pid} ${p.comm} ${p.args}`);
}

/** After each test: no turn of this sidecar still runs, whatever the test left (so a failure does not cascade). */
async function settleTurns(h: RpcHarness | undefined): Promise<void> {
  if (h === undefined) return;
  for (const turnId of h.t.sidecar.turns.activeTurnIds()) h.t.sidecar.turns.cancel(turnId);
  await waitFor(() => h.t.sidecar.turns.running === 0, { timeoutMs: 15_000, what: "every turn to end" });
}

let stub: ResponsesStub;
before(async () => {
  stub = await startGatewayStub();
});
after(async () => {
  await stub?.close();
});

describe("protocol over the real socket", () => {
  let h: RpcHarness;
  /** A workspace ensured once, for the turn tests and the refusals that need one. */
  let base: WorkspaceParams;
  let baseContainerId: string;

  before(async () => {
    h = await startRpcHarness({ stub });
    base = await h.t.workspace(uniqueId("base"));
    const client = await h.client();
    baseContainerId = (await client.ensureWorkspace(base)).containerId;
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => stub.reset());
  afterEach(() => settleTurns(h));

  describe("methods", () => {
    test("sidecar.health: the engine is reachable and the image present", async () => {
      const conn = await h.raw();
      const health = resultOf<HealthResult>(await conn.call("sidecar.health", {}));
      assert.equal(health.version, sidecarVersion());
      assert.match(health.codexVersion, /^\d+\.\d+\.\d+/);
      assert.equal(health.docker.reachable, true);
      assert.match(health.docker.serverVersion ?? "", /^\d+\.\d+/);
      assert.deepEqual(health.image, { ref: testImage(), present: true });
      assert.ok(health.workspaces.total >= 1 && health.workspaces.running >= 1, JSON.stringify(health.workspaces));
      assert.equal(health.turns.running, 0);
      // Without params at all, as `nc -U` users send it.
      const bare = resultOf<HealthResult>(
        await h.rawLine(conn, '{"jsonrpc":"2.0","id":"bare","method":"sidecar.health"}'),
      );
      assert.equal(bare.version, health.version);
    });

    test("workspace.ensure creates the container, then reports created:false for the same workspace", async () => {
      const conn = await h.raw();
      const ws = await h.t.workspace();
      const first = resultOf<EnsureWorkspaceResult>(
        await conn.call("workspace.ensure", { ...ws, someFutureField: "ignored" }, { timeoutMs: 60_000 }),
      );
      assert.equal(first.workspaceId, ws.workspaceId);
      assert.equal(first.created, true);
      assert.equal(first.state, "running");
      assert.equal(first.containerName, `alive-codex-${ws.workspaceId}`);
      assert.match(first.containerId, /^[0-9a-f]{64}$/);
      const info = await h.docker.getContainer(first.containerId).inspect();
      assert.equal(info.State.Running, true);
      assert.equal(info.Config.Labels["dev.alive.codex.test-instance"], h.t.instance);
      assert.ok(existsSync(workspacePaths(h.t.stateDir, ws.workspaceId).home), "HOME made under the state dir");

      const second = resultOf<EnsureWorkspaceResult>(await conn.call("workspace.ensure", ws));
      assert.deepEqual(second, { ...first, created: false });
    });

    test("workspace.list lists each workspace with its container and turn state", async () => {
      const conn = await h.raw();
      const { workspaces } = resultOf<{ workspaces: WorkspaceSummary[] }>(await conn.call("workspace.list", {}));
      const entry = workspaces.find((w) => w.workspaceId === base.workspaceId);
      assert.ok(entry, JSON.stringify(workspaces));
      assert.equal(entry.userId, base.userId);
      assert.equal(entry.containerId, baseContainerId);
      assert.equal(entry.containerName, `alive-codex-${base.workspaceId}`);
      assert.equal(entry.state, "running");
      assert.equal(entry.activeTurnId, null);
      assert.ok(!Number.isNaN(Date.parse(entry.createdAt)) && !Number.isNaN(Date.parse(entry.lastActiveAt)));
    });

    test("turn.run: turn.event notifications from seq 0 without gaps, all before the result; workspace.logs shows the turn", async () => {
      const conn = await h.raw();
      stub.script(
        { kind: "command", cmd: "echo protocol-turn-output" },
        { kind: "message", text: "protocol turn done" },
      );
      const from = conn.messages.length;
      const reply = await conn.call(
        "turn.run",
        { workspaceId: base.workspaceId, turnId: "turn-proto-run", input: "run the command" },
        { timeoutMs: 90_000 },
      );
      const result = resultOf<TurnResult>(reply);

      assert.equal(result.turnId, "turn-proto-run");
      assert.match(result.threadId ?? "", UUID);
      assert.equal(result.status, "completed");
      assert.equal(result.finalResponse, "protocol turn done");
      assert.equal(result.error, undefined);
      assert.ok(Array.isArray(result.items));
      const command = result.items.find((i) => i.type === "command_execution");
      assert.ok(
        command?.type === "command_execution" && command.aggregated_output.includes("protocol-turn-output"),
        JSON.stringify(result.items),
      );
      assert.ok(result.items.some((i) => i.type === "agent_message"));
      assert.ok(result.usage !== null);
      for (const key of ["input_tokens", "cached_input_tokens", "output_tokens"] as const)
        assert.equal(typeof result.usage[key], "number", key);
      assert.deepEqual(result.turnUsage, result.usage, "a new thread's first turn: its own usage is the thread's");

      const received = conn.messages.slice(from);
      const events = received
        .filter((m) => m.method === "turn.event")
        .map((m) => m.params as { turnId: string; seq: number; event: { type: string; [k: string]: unknown } });
      assert.ok(events.length >= 4, `events: ${events.map((e) => e.event.type).join(",")}`);
      assert.ok(events.every((e) => e.turnId === "turn-proto-run"));
      assert.deepEqual(
        events.map((e) => e.seq),
        events.map((_e, i) => i),
        "seq counts from 0 without gaps",
      );
      assert.deepEqual(events[0]?.event, {
        type: "sidecar.turn.accepted",
        turn_id: "turn-proto-run",
        workspace_id: base.workspaceId,
        thread_id: null,
      });
      assert.ok(events.some((e) => e.event.type === "thread.started" && e.event.thread_id === result.threadId));
      assert.equal(events.at(-1)?.event.type, "turn.completed");
      const resultIndex = received.indexOf(reply);
      const firstEvent = received.findIndex((m) => m.method === "turn.event");
      const lastEvent = received.findLastIndex((m) => m.method === "turn.event");
      assert.ok(firstEvent < resultIndex && lastEvent < resultIndex, "every event is written before the result");
      assert.equal(stub.requests.length, 2);

      // The engine copies the container's output into its log a moment after the turn's result.
      const finished = new RegExp(`turn=turn-proto-run thread=${result.threadId} event=finished status=completed`);
      const logs = await waitFor(
        async () => {
          const current = resultOf<{ logs: string }>(
            await conn.call("workspace.logs", { workspaceId: base.workspaceId }),
          );
          return finished.test(current.logs) ? current : null;
        },
        { timeoutMs: 10_000, what: "the turn's end in workspace.logs" },
      );
      assert.match(logs.logs, /turn=turn-proto-run thread=new event=started/);
      assert.match(
        logs.logs,
        new RegExp(`turn=turn-proto-run thread=${result.threadId} event=finished status=completed`),
      );
      const tail = resultOf<{ logs: string }>(
        await conn.call("workspace.logs", { workspaceId: base.workspaceId, tail: 1 }),
      );
      assert.equal(tail.logs.trim().split("\n").length, 1);
      assert.match(tail.logs, /turn=turn-proto-run .*event=finished/);

      // The turn is over: the workspace is free and nothing of it runs.
      const after = await h.snapshot();
      assert.deepEqual(after.bridges, []);
      assert.deepEqual(after.codexInContainers, []);
      assert.deepEqual(after.bridgeProcesses, []);
    });

    test("turn.cancel of a running turn answers cancelled:true and the turn ends cancelled with its codex gone", async () => {
      const conn = await h.raw();
      stub.script({ kind: "hang" });
      const from = conn.messages.length;
      conn.send(
        "turn.run",
        { workspaceId: base.workspaceId, turnId: "turn-proto-cancel", input: "hang" },
        "run-cancel",
      );
      await stub.waitForRequests(1, 60_000);
      const running = await h.snapshot();
      // The detectors see a live turn, so their emptiness below means something.
      assert.equal(running.bridges.length, 1, JSON.stringify(running));
      assert.equal(running.codexInContainers.length, 1, JSON.stringify(running));
      assert.equal(running.bridgeProcesses.length >= 1, true, JSON.stringify(running));

      const other = await h.raw();
      assert.deepEqual(resultOf(await other.call("turn.cancel", { turnId: "turn-proto-cancel" })), { cancelled: true });
      const result = resultOf<TurnResult>(await conn.response("run-cancel", { from, timeoutMs: 30_000 }));
      assert.equal(result.status, "cancelled");
      assert.equal(result.error?.code, "cancelled");
      await waitFor(
        async () => {
          const now = await h.snapshot();
          return now.codexInContainers.length === 0 && now.bridges.length === 0 && now.bridgeProcesses.length === 0;
        },
        { timeoutMs: 5000, what: "the cancelled turn's codex, bridge and bridge script to be gone" },
      );
      assertRefused(await other.call("turn.cancel", { turnId: "turn-proto-cancel" }), ErrorCode.unknownTurn, "turnId");
      assertRefused(await other.call("turn.cancel", { turnId: "no-such-turn" }), ErrorCode.unknownTurn, "turnId");
    });

    test("workspace.remove answers removed:true, then removed:false", async () => {
      const conn = await h.raw();
      const ws = await h.t.workspace();
      const ensured = resultOf<EnsureWorkspaceResult>(await conn.call("workspace.ensure", ws, { timeoutMs: 60_000 }));
      assert.deepEqual(
        resultOf(await conn.call("workspace.remove", { workspaceId: ws.workspaceId, purgeHome: true })),
        { removed: true },
      );
      await assert.rejects(
        h.docker.getContainer(ensured.containerId).inspect(),
        (e: { statusCode?: number }) => e.statusCode === 404,
      );
      assert.equal(
        existsSync(workspacePaths(h.t.stateDir, ws.workspaceId).root),
        false,
        "purgeHome removed HOME and TMPDIR",
      );
      assert.deepEqual(resultOf(await conn.call("workspace.remove", { workspaceId: ws.workspaceId })), {
        removed: false,
      });
      const { workspaces } = resultOf<{ workspaces: WorkspaceSummary[] }>(await conn.call("workspace.list"));
      assert.equal(
        workspaces.some((w) => w.workspaceId === ws.workspaceId),
        false,
      );
    });
  });

  describe("message-level refusals keep the connection and make nothing", () => {
    const exactLine = (): string => {
      const head = '{"jsonrpc":"2.0","id":"exact","method":"sidecar.health","params":{"pad":"';
      const tail = '"}}';
      return head + "x".repeat(ONE_MIB - head.length - tail.length) + tail;
    };
    const cases: Array<{
      name: string;
      line: () => string | Buffer;
      code: number;
      id: string | number | null;
      field?: string;
    }> = [
      {
        name: "malformed JSON",
        line: () => '{"jsonrpc":"2.0","id":1,"method":"sidecar.health"',
        code: ErrorCode.parseError,
        id: null,
      },
      {
        name: "bytes that are not UTF-8",
        line: () => Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
        code: ErrorCode.parseError,
        id: null,
      },
      { name: "a number, not an object", line: () => "42", code: ErrorCode.invalidRequest, id: null },
      { name: "a string, not an object", line: () => '"sidecar.health"', code: ErrorCode.invalidRequest, id: null },
      {
        name: "a batch (array)",
        line: () => '[{"jsonrpc":"2.0","id":"in-batch","method":"sidecar.health"}]',
        code: ErrorCode.invalidRequest,
        id: null,
      },
      {
        name: 'jsonrpc "1.0"',
        line: () => '{"jsonrpc":"1.0","id":"v1","method":"sidecar.health"}',
        code: ErrorCode.invalidRequest,
        id: "v1",
      },
      {
        name: "id null",
        line: () => '{"jsonrpc":"2.0","id":null,"method":"sidecar.health"}',
        code: ErrorCode.invalidRequest,
        id: null,
      },
      {
        name: "id an object",
        line: () => '{"jsonrpc":"2.0","id":{"a":1},"method":"sidecar.health"}',
        code: ErrorCode.invalidRequest,
        id: null,
      },
      {
        name: "method not a string",
        line: () => '{"jsonrpc":"2.0","id":"m1","method":7}',
        code: ErrorCode.invalidRequest,
        id: "m1",
      },
      {
        name: "a line over 1 MiB",
        line: () =>
          `{"jsonrpc":"2.0","id":"big","method":"workspace.ensure","params":{"pad":"${"x".repeat(ONE_MIB)}"}}`,
        code: ErrorCode.invalidRequest,
        id: null,
      },
      {
        name: "an unknown method",
        line: () => '{"jsonrpc":"2.0","id":"u1","method":"workspace.destroy","params":{}}',
        code: ErrorCode.methodNotFound,
        id: "u1",
        field: "method",
      },
    ];
    for (const c of cases) {
      test(`${c.name} → ${c.code}`, async () => {
        const before = await h.snapshot();
        const conn = await h.raw();
        const reply = await h.rawLine(conn, c.line(), { id: c.id });
        assert.equal(reply.id, c.id);
        assertRefused(reply, c.code, c.field);
        await assertStillServing(h, conn);
        assertNothingMade(before, await h.snapshot());
      });
    }

    test("a line of exactly 1 MiB is still read", async () => {
      const conn = await h.raw();
      const line = exactLine();
      assert.equal(Buffer.byteLength(line), ONE_MIB);
      resultOf<HealthResult>(await h.rawLine(conn, line));
    });

    test("several refusals in a row on one connection, then a normal call", async () => {
      const conn = await h.raw();
      for (const c of cases) assertRefused(await h.rawLine(conn, c.line(), { id: c.id }), c.code, c.field);
      await assertStillServing(h, conn);
    });
  });

  describe("refused params make nothing", () => {
    interface Refusal {
      name: string;
      method: string;
      params: () => Promise<unknown>;
      code: number;
      field: string;
      /** Paths a half-done request could have made. */
      mustNotExist?: () => string[];
      check?: (error: WireError) => void;
    }
    const fresh = (name: string, extra: Partial<WorkspaceParams> = {}): Promise<WorkspaceParams> =>
      h.t.workspace(uniqueId(name), extra);
    const stateOf = (workspaceId: string): string[] => [
      path.resolve(h.t.stateDir, "workspaces", workspaceId),
      path.resolve(h.t.stateDir, workspaceId),
    ];
    const withId = async (workspaceId: unknown): Promise<Record<string, unknown>> => ({
      ...(await fresh("dir")),
      workspaceId,
    });
    const outsideDir = async (): Promise<string> => {
      const dir = path.join(h.t.root, "outside-the-roots");
      await fs.mkdir(dir, { recursive: true });
      await fs.chown(dir, TEST_UID, TEST_GID);
      return dir;
    };
    const turnOnBase = (extra: Record<string, unknown>): Promise<Record<string, unknown>> =>
      Promise.resolve({ workspaceId: base.workspaceId, input: "x", ...extra });

    const refusals: Refusal[] = [
      // -32602: types and shapes
      {
        name: "params an array",
        method: "workspace.ensure",
        params: async () => [await fresh("arr")],
        code: ErrorCode.invalidParams,
        field: "params",
      },
      {
        name: "uid a string",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("uidstr")), uid: "10001" }),
        code: ErrorCode.invalidParams,
        field: "uid",
        check: (e) => assert.equal(e.data?.received, '"10001"'),
      },
      {
        name: "gid a fraction",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("gidfrac")), gid: 10001.5 }),
        code: ErrorCode.invalidParams,
        field: "gid",
      },
      {
        name: "workspaceId a number",
        method: "workspace.ensure",
        params: () => withId(42),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
      },
      {
        name: "workspaceId missing",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("noid")), workspaceId: undefined }),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
      },
      {
        name: "workspaceId '..'",
        method: "workspace.ensure",
        params: () => withId(".."),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
      },
      {
        name: "workspaceId 'a..b'",
        method: "workspace.ensure",
        params: () => withId("a..b"),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
        mustNotExist: () => stateOf("a..b"),
      },
      {
        name: "workspaceId '../../escape'",
        method: "workspace.ensure",
        params: () => withId("../../escape"),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
        mustNotExist: () => [path.resolve(h.t.stateDir, "workspaces", "../../escape")],
      },
      {
        name: "workspaceId 'a/b'",
        method: "workspace.ensure",
        params: () => withId("a/b"),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
        mustNotExist: () => stateOf("a"),
      },
      {
        name: "workspaceId '/abs'",
        method: "workspace.ensure",
        params: () => withId("/abs"),
        code: ErrorCode.invalidParams,
        field: "workspaceId",
        mustNotExist: () => ["/abs"],
      },
      {
        name: "userId with a newline",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("nl")), userId: "alice\nroot" }),
        code: ErrorCode.invalidParams,
        field: "userId",
      },
      {
        name: "userId with NUL",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("nul")), userId: "alice\u0000root" }),
        code: ErrorCode.invalidParams,
        field: "userId",
      },
      {
        name: "git.email with a newline",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("git")), git: { email: "a@b.c\nX-Evil: 1" } }),
        code: ErrorCode.invalidParams,
        field: "git.email",
      },
      {
        name: "network 'host'",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("net")), network: "host" }),
        code: ErrorCode.invalidParams,
        field: "network",
      },
      {
        name: "resources.memoryMb a string",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("mem")), resources: { memoryMb: "lots" } }),
        code: ErrorCode.invalidParams,
        field: "resources.memoryMb",
      },
      {
        name: "resources.pids below the floor",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("pids")), resources: { pids: 1 } }),
        code: ErrorCode.invalidParams,
        field: "resources.pids",
      },
      {
        name: "workspacePath relative",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("rel")), workspacePath: "workspaces/x" }),
        code: ErrorCode.invalidParams,
        field: "workspacePath",
      },
      {
        name: "workspacePath missing on the host",
        method: "workspace.ensure",
        params: async () => ({
          ...(await fresh("gone")),
          workspacePath: path.join(h.t.workspaceRoot, "does-not-exist"),
        }),
        code: ErrorCode.invalidParams,
        field: "workspacePath",
      },
      {
        name: "threadId not a UUID",
        method: "turn.run",
        params: () => turnOnBase({ threadId: "my-thread" }),
        code: ErrorCode.invalidParams,
        field: "threadId",
      },
      {
        name: "input a number",
        method: "turn.run",
        params: () => turnOnBase({ input: 42 }),
        code: ErrorCode.invalidParams,
        field: "input",
      },
      {
        name: "input empty",
        method: "turn.run",
        params: () => turnOnBase({ input: "" }),
        code: ErrorCode.invalidParams,
        field: "input",
      },
      {
        name: "turnId with a space",
        method: "turn.run",
        params: () => turnOnBase({ turnId: "bad turn" }),
        code: ErrorCode.invalidParams,
        field: "turnId",
      },
      {
        name: "options.timeoutMs a string",
        method: "turn.run",
        params: () => turnOnBase({ options: { timeoutMs: "5s" } }),
        code: ErrorCode.invalidParams,
        field: "options.timeoutMs",
      },
      {
        name: "options.sandboxMode unknown",
        method: "turn.run",
        params: () => turnOnBase({ options: { sandboxMode: "yolo" } }),
        code: ErrorCode.invalidParams,
        field: "options.sandboxMode",
      },
      {
        name: "an mcpServers env value with NUL (never echoed back)",
        method: "turn.run",
        params: () =>
          turnOnBase({ mcpServers: { fs: { command: "node", env: { TOKEN: "sk-mcp-\u0000secret-value-xyz" } } } }),
        code: ErrorCode.invalidParams,
        field: "mcpServers.fs.env.TOKEN",
        check: (e) => assert.ok(!JSON.stringify(e).includes("secret-value-xyz"), "the env value is not echoed"),
      },
      {
        name: "an mcpServers env value with a newline",
        method: "turn.run",
        params: () => turnOnBase({ mcpServers: { fs: { command: "node", env: { TOKEN: "a\nb" } } } }),
        code: ErrorCode.invalidParams,
        field: "mcpServers.fs.env.TOKEN",
      },
      {
        name: "uid without workspacePath",
        method: "turn.run",
        params: () => turnOnBase({ uid: TEST_UID }),
        code: ErrorCode.invalidParams,
        field: "workspacePath",
      },
      {
        name: "tail negative",
        method: "workspace.logs",
        params: () => Promise.resolve({ workspaceId: base.workspaceId, tail: -1 }),
        code: ErrorCode.invalidParams,
        field: "tail",
      },
      {
        name: "purgeHome a string",
        method: "workspace.remove",
        params: () => Promise.resolve({ workspaceId: base.workspaceId, purgeHome: "yes" }),
        code: ErrorCode.invalidParams,
        field: "purgeHome",
      },
      {
        name: "turnId a number",
        method: "turn.cancel",
        params: () => Promise.resolve({ turnId: 5 }),
        code: ErrorCode.invalidParams,
        field: "turnId",
      },
      // -32002, -32004
      {
        name: "an unknown workspace",
        method: "turn.run",
        params: () => Promise.resolve({ workspaceId: "never-ensured", input: "x" }),
        code: ErrorCode.unknownWorkspace,
        field: "workspaceId",
        mustNotExist: () => stateOf("never-ensured"),
      },
      {
        name: "logs of an unknown workspace",
        method: "workspace.logs",
        params: () => Promise.resolve({ workspaceId: "never-ensured" }),
        code: ErrorCode.unknownWorkspace,
        field: "workspaceId",
      },
      {
        name: "an unknown turn",
        method: "turn.cancel",
        params: () => Promise.resolve({ turnId: "no-such-turn" }),
        code: ErrorCode.unknownTurn,
        field: "turnId",
      },
      // -32006: the operator's policy
      {
        name: "uid 0",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("root")), uid: 0 }),
        code: ErrorCode.notAllowed,
        field: "uid",
      },
      {
        name: "gid 0",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("rootg")), gid: 0 }),
        code: ErrorCode.notAllowed,
        field: "gid",
      },
      {
        name: "uid below the range",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("low")), uid: 5000 }),
        code: ErrorCode.notAllowed,
        field: "uid",
      },
      {
        name: "gid above the range",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("high")), gid: 70000 }),
        code: ErrorCode.notAllowed,
        field: "gid",
      },
      {
        name: "workspacePath outside the roots",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("out")), workspacePath: await outsideDir() }),
        code: ErrorCode.notAllowed,
        field: "workspacePath",
      },
      {
        name: "workspacePath /",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("slash")), workspacePath: "/" }),
        code: ErrorCode.notAllowed,
        field: "workspacePath",
      },
      {
        name: "workspacePath the root itself",
        method: "workspace.ensure",
        params: async () => ({ ...(await fresh("rootdir")), workspacePath: h.t.workspaceRoot }),
        code: ErrorCode.notAllowed,
        field: "workspacePath",
      },
      {
        name: "workspacePath escaping the root through a symlink",
        method: "workspace.ensure",
        params: async () => {
          const ws = await fresh("link");
          const link = path.join(h.t.workspaceRoot, uniqueId("escape"));
          await fs.symlink(await outsideDir(), link);
          return { ...ws, workspacePath: link };
        },
        code: ErrorCode.notAllowed,
        field: "workspacePath",
      },
      {
        name: "workspacePath leaving the root through ..",
        method: "workspace.ensure",
        params: async () => {
          const ws = await fresh("dotdot");
          await outsideDir();
          // Not normalised on purpose: the server must resolve it, not trust its prefix.
          return { ...ws, workspacePath: `${ws.workspacePath}/../../outside-the-roots` };
        },
        code: ErrorCode.notAllowed,
        field: "workspacePath",
      },
      {
        name: "uid 0 riding on turn.run",
        method: "turn.run",
        params: async () => ({ ...(await fresh("turnroot")), uid: 0, input: "x" }),
        code: ErrorCode.notAllowed,
        field: "uid",
      },
      {
        // workspace-write is the container's own promise now (egress.test.ts); read-only still needs codex's sandbox.
        name: 'sandboxMode "read-only" (codex\'s sandbox cannot run in the container)',
        method: "turn.run",
        params: () => turnOnBase({ options: { sandboxMode: "read-only" } }),
        code: ErrorCode.notAllowed,
        field: "options.sandboxMode",
        check: (e) => assert.match(e.data?.reason ?? "", /danger-full-access/),
      },
      {
        name: "a local image outside the workspace",
        method: "turn.run",
        params: () =>
          turnOnBase({
            input: [
              { type: "text", text: "look" },
              { type: "local_image", path: "/etc/shadow" },
            ],
          }),
        code: ErrorCode.notAllowed,
        field: "input[1].path",
      },
    ];

    for (const r of refusals) {
      test(`${r.method}: ${r.name} → ${r.code} (${r.field})`, async () => {
        const params = await r.params();
        const before = await h.snapshot();
        const requestsBefore = stub.requests.length;
        const conn = await h.raw();
        const error = assertRefused(await conn.call(r.method, params, { timeoutMs: 30_000 }), r.code, r.field);
        r.check?.(error);
        await assertStillServing(h, conn);
        assertNothingMade(before, await h.snapshot());
        assert.equal(stub.requests.length, requestsBefore, "no codex reached the model");
        for (const p of r.mustNotExist?.() ?? []) assert.equal(existsSync(p), false, `${p} must not exist`);
      });
    }

    test("-32003 while a turn hangs: a second turn.run on the workspace is refused at once; a reused request id is -32600", async () => {
      const conn = await h.raw();
      stub.script({ kind: "hang" });
      const from = conn.messages.length;
      conn.send("turn.run", { workspaceId: base.workspaceId, turnId: "turn-proto-busy", input: "hang" }, "busy-run");
      await stub.waitForRequests(1, 60_000);
      const before = await h.snapshot();
      assert.equal(before.bridges.length, 1);
      assert.equal(before.codexInContainers.length, 1, "the hanging turn's codex is visible");

      const other = await h.raw();
      const started = Date.now();
      const busy = assertRefused(
        await other.call("turn.run", { workspaceId: base.workspaceId, input: "again" }),
        ErrorCode.workspaceBusy,
        "workspaceId",
      );
      assert.equal(busy.data?.activeTurnId, "turn-proto-busy");
      assert.ok(Date.now() - started < 5000, "refused at once, not queued");
      // The same id while the first is in flight, on the same connection.
      assertRefused(
        await h.rawLine(conn, '{"jsonrpc":"2.0","id":"busy-run","method":"sidecar.health"}', { id: "busy-run" }),
        ErrorCode.invalidRequest,
        "id",
      );
      await assertStillServing(h, other);
      await assertStillServing(h, conn);
      assertNothingMade(before, await h.snapshot());
      assert.equal(stub.requests.length, 1);

      assert.deepEqual(resultOf(await other.call("turn.cancel", { turnId: "turn-proto-busy" })), { cancelled: true });
      // The refusal of the reused id carries that id too: the turn's own answer is the one with a result.
      const answer = await waitFor(() => conn.responses("busy-run", from).find((m) => "result" in m), {
        timeoutMs: 30_000,
        what: "the hanging turn's result",
      });
      assert.equal(resultOf<TurnResult>(answer).status, "cancelled");
      assert.deepEqual(
        conn.responses("busy-run", from).map((m) => ("result" in m ? "result" : m.error?.code)),
        [ErrorCode.invalidRequest, "result"],
      );
    });
  });

  describe("concurrency and disconnects", () => {
    test("20 health + 2 ensures + a turn in flight on one connection: each answered exactly once", async () => {
      const conn = await h.raw();
      stub.script({ kind: "message", text: "concurrent turn ok" });
      const a = await h.t.workspace();
      const b = await h.t.workspace();
      const lines: string[] = [];
      const ids: string[] = [];
      const add = (id: string, method: string, params: unknown): void => {
        ids.push(id);
        lines.push(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      };
      add("turn", "turn.run", { workspaceId: base.workspaceId, turnId: "turn-proto-concurrent", input: "go" });
      add("ensure-a", "workspace.ensure", a);
      for (let i = 0; i < 10; i++) add(`health-${i}`, "sidecar.health", {});
      add("ensure-b", "workspace.ensure", b);
      for (let i = 10; i < 20; i++) add(`health-${i}`, "sidecar.health", {});
      const from = conn.messages.length;
      conn.write(`${lines.join("\n")}\n`);
      await waitFor(() => ids.every((id) => conn.responses(id, from).length > 0), {
        timeoutMs: 90_000,
        what: "every request to be answered",
      });
      await assertStillServing(h, conn); // a last round trip, so a duplicate answer would have arrived by now
      for (const id of ids) assert.equal(conn.responses(id, from).length, 1, `${id} answered exactly once`);
      const stray = conn.messages
        .slice(from)
        .filter((m) => m.method === undefined && !ids.includes(String(m.id)) && !/^r\d+$/.test(String(m.id)));
      assert.deepEqual(stray, [], "no answer to a request nobody sent");
      for (let i = 0; i < 20; i++)
        assert.equal(resultOf<HealthResult>(conn.responses(`health-${i}`, from)[0]!).docker.reachable, true);
      assert.equal(resultOf<EnsureWorkspaceResult>(conn.responses("ensure-a", from)[0]!).created, true);
      assert.equal(resultOf<EnsureWorkspaceResult>(conn.responses("ensure-b", from)[0]!).created, true);
      const turn = resultOf<TurnResult>(conn.responses("turn", from)[0]!);
      assert.equal(turn.status, "completed");
      assert.equal(turn.finalResponse, "concurrent turn ok");
      const seqs = conn
        .notifications("turn.event")
        .map((n) => n.params as { turnId: string; seq: number })
        .filter((p) => p.turnId === "turn-proto-concurrent")
        .map((p) => p.seq);
      assert.deepEqual(
        seqs,
        seqs.map((_s, i) => i),
      );
    });

    test("a client that drops its connection mid-turn cancels the turn: its processes leave the container, the sidecar stays up", async () => {
      const conn = await h.raw();
      stub.script({ kind: "command", cmd: "sleep 1000" }, { kind: "message", text: "never reached" });
      conn.send("turn.run", { workspaceId: base.workspaceId, turnId: "turn-proto-drop", input: "sleep" }, "drop-run");
      await waitFor(
        () =>
          conn
            .notifications("turn.event")
            .some((n) => (n.params as { event: { type: string } }).event.type === "item.started"),
        {
          timeoutMs: 60_000,
          what: "the command to start",
        },
      );
      const running = await waitFor(
        async () => {
          const procs = await turnProcesses(h, baseContainerId);
          return procs.some((p) => /sleep 1000/.test(p)) && procs.some((p) => / codex /.test(p)) ? procs : null;
        },
        { timeoutMs: 10_000, what: "codex and its command to show in the container" },
      );
      assert.ok(running.length >= 2, running.join("\n"));

      conn.destroy();
      let left: string[] = running;
      await waitFor(async () => (left = await turnProcesses(h, baseContainerId)).length === 0, {
        timeoutMs: 5000,
        what: "only the container's first two processes to remain",
      }).catch((error: Error) => {
        throw new Error(`${error.message}; still there:\n${left.join("\n")}`);
      });
      await waitFor(
        async () => {
          const client = await h.client();
          const { workspaces } = await client.listWorkspaces();
          return workspaces.find((w) => w.workspaceId === base.workspaceId)?.activeTurnId === null;
        },
        { timeoutMs: 5000, what: "the workspace to be free" },
      );
      const health = await (await h.client()).health();
      assert.equal(health.turns.running, 0);
      // The line is written before the workspace is free; the engine copies the container's output
      // into its log a moment later.
      await waitFor(
        async () =>
          /turn=turn-proto-drop thread=\S+ event=finished status=cancelled error=cancelled/.test(
            (await (await h.client()).workspaceLogs(base.workspaceId)).logs,
          ),
        {
          timeoutMs: 10_000,
          what: "the turn's end in docker logs",
        },
      );
      const snapshot = await h.snapshot();
      assert.deepEqual(snapshot.bridges, []);
      assert.deepEqual(snapshot.bridgeProcesses, []);
      assert.equal(stub.requests.length, 1, "codex never posted the command's output");
    });

    test("a client that half-closes mid-turn gets the turn back cancelled, then the server closes the connection", async () => {
      const conn = await h.raw();
      stub.script({ kind: "hang" });
      conn.send("turn.run", { workspaceId: base.workspaceId, turnId: "turn-proto-eof", input: "hang" }, "eof-run");
      await stub.waitForRequests(1, 60_000);
      conn.end();
      const result = resultOf<TurnResult>(await conn.response("eof-run", { timeoutMs: 30_000 }));
      assert.equal(result.status, "cancelled");
      assert.match(result.error?.message ?? "", /cancelled/);
      await waitFor(() => conn.isClosed || conn.socket.readableEnded, {
        timeoutMs: 5000,
        what: "the server to end the connection",
      });
      await waitFor(async () => (await h.snapshot()).codexInContainers.length === 0, {
        timeoutMs: 5000,
        what: "codex to be gone",
      });
    });
  });
});

describe("a sidecar whose runtime image is missing (--image alive-codex-runtime:missing)", () => {
  let h: RpcHarness;
  before(async () => {
    h = await startRpcHarness({ flags: { "--image": "alive-codex-runtime:missing" } });
  });
  after(async () => {
    await h?.close();
  });

  test("health says the image is missing; ensure and turn.run with workspace fields are -32005 and make nothing", async () => {
    const conn = await h.raw();
    const health = resultOf<HealthResult>(await conn.call("sidecar.health"));
    assert.equal(health.docker.reachable, true);
    assert.deepEqual(health.image, { ref: "alive-codex-runtime:missing", present: false });

    const ws = await h.t.workspace();
    const before = await h.snapshot();
    const error = assertRefused(await conn.call("workspace.ensure", ws), ErrorCode.imageUnavailable, "image");
    assert.match(error.message, /alive-codex-runtime:missing/);
    await assertStillServing(h, conn);
    assertRefused(await conn.call("turn.run", { ...ws, input: "x" }), ErrorCode.imageUnavailable, "image");
    await assertStillServing(h, conn);
    assertNothingMade(before, await h.snapshot());
    assert.equal(existsSync(workspacePaths(h.t.stateDir, ws.workspaceId).root), false);
  });
});

describe("a sidecar at its limits (--max-workspaces 2 --max-turns 1)", () => {
  let h: RpcHarness;
  before(async () => {
    h = await startRpcHarness({ stub, flags: { "--max-workspaces": "2", "--max-turns": "1" } });
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(() => stub.reset());
  afterEach(() => settleTurns(h));

  test("a third workspace and a second concurrent turn are -32007 and make nothing", async () => {
    const conn = await h.raw();
    const [a, b, c] = [await h.t.workspace(), await h.t.workspace(), await h.t.workspace()];
    resultOf(await conn.call("workspace.ensure", a, { timeoutMs: 60_000 }));
    resultOf(await conn.call("workspace.ensure", b, { timeoutMs: 60_000 }));

    let before = await h.snapshot();
    assertRefused(await conn.call("workspace.ensure", c), ErrorCode.limitReached, "workspaceId");
    await assertStillServing(h, conn);
    assertNothingMade(before, await h.snapshot());
    assert.equal(existsSync(workspacePaths(h.t.stateDir, c.workspaceId).root), false);

    stub.script({ kind: "hang" });
    const turnConn = await h.raw();
    turnConn.send("turn.run", { workspaceId: a.workspaceId, turnId: "turn-limit-a", input: "hang" }, "limit-a");
    await stub.waitForRequests(1, 60_000);
    before = await h.snapshot();
    assertRefused(
      await conn.call("turn.run", { workspaceId: b.workspaceId, input: "second" }),
      ErrorCode.limitReached,
      "turnId",
    );
    await assertStillServing(h, conn);
    assertNothingMade(before, await h.snapshot());
    assert.equal(stub.requests.length, 1);

    assert.deepEqual(resultOf(await conn.call("turn.cancel", { turnId: "turn-limit-a" })), { cancelled: true });
    assert.equal(resultOf<TurnResult>(await turnConn.response("limit-a", { timeoutMs: 30_000 })).status, "cancelled");
  });
});

describe("a sidecar whose engine is unreachable (--docker-host unix:///nonexistent/docker.sock)", () => {
  let h: RpcHarness;
  before(async () => {
    h = await startRpcHarness({ flags: { "--docker-host": "unix:///nonexistent/docker.sock" } });
  });
  after(async () => {
    await h?.close();
  });

  test("it starts anyway and logs why; health says unreachable; ensure is -32001 and makes nothing", async () => {
    assert.ok(
      h.t.logLines.some((line) => /Docker engine unreachable at start/.test(line)),
      "the start-up logged the unreachable engine",
    );
    const conn = await h.raw();
    const health = resultOf<HealthResult>(await conn.call("sidecar.health"));
    assert.equal(health.docker.reachable, false);
    assert.equal(health.image.present, false);

    const ws = await h.t.workspace();
    const before = await h.snapshot();
    const error = assertRefused(await conn.call("workspace.ensure", ws), ErrorCode.dockerUnreachable);
    assert.ok(typeof error.data?.reason === "string" && error.data.reason.length > 0, JSON.stringify(error));
    await assertStillServing(h, conn);
    assertRefused(await conn.call("turn.run", { ...ws, input: "x" }), ErrorCode.dockerUnreachable);
    assert.deepEqual(resultOf(await conn.call("workspace.list")), { workspaces: [] });
    assertRefused(
      await conn.call("turn.run", { workspaceId: ws.workspaceId, input: "x" }),
      ErrorCode.unknownWorkspace,
      "workspaceId",
    );
    await assertStillServing(h, conn);
    assertNothingMade(before, await h.snapshot());
    assert.equal(existsSync(workspacePaths(h.t.stateDir, ws.workspaceId).root), false);
  });
});

describe("a sidecar whose engine comes back after start", () => {
  let h: RpcHarness;
  let dir: string;
  let proxy: net.Server;
  const proxied = new Set<net.Socket>();
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-engine-"));
    h = await startRpcHarness({ flags: { "--docker-host": `unix://${path.join(dir, "docker.sock")}` } });
  });
  after(async () => {
    await h?.close();
    for (const socket of proxied) socket.destroy();
    await new Promise<void>((resolve) => (proxy?.listening ? proxy.close(() => resolve()) : resolve()));
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("-32001 while the engine is away, then the retry adopts it and ensure works", async () => {
    const conn = await h.raw();
    const ws = await h.t.workspace();
    assertRefused(await conn.call("workspace.ensure", ws), ErrorCode.dockerUnreachable);
    // The engine "comes back": a relay to the real engine appears at the configured socket path.
    proxy = net.createServer((client) => {
      const engine = net.createConnection("/var/run/docker.sock");
      for (const s of [client, engine]) {
        proxied.add(s);
        s.on("error", () => {});
        s.once("close", () => proxied.delete(s));
      }
      client.pipe(engine).pipe(client);
      client.once("close", () => engine.destroy());
      engine.once("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(path.join(dir, "docker.sock"), resolve));
    assert.equal(resultOf<HealthResult>(await conn.call("sidecar.health")).docker.reachable, true);
    await waitFor(() => h.t.logLines.some((line) => /Docker engine reachable again/.test(line)), {
      timeoutMs: 15_000,
      what: "the background retry to adopt the engine",
    });
    const ensured = resultOf<EnsureWorkspaceResult>(await conn.call("workspace.ensure", ws, { timeoutMs: 60_000 }));
    assert.equal(ensured.created, true);
    assert.equal((await h.docker.getContainer(ensured.containerId).inspect()).State.Running, true);
  });
});
