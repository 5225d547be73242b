import type { ThreadEvent } from "@openai/codex-sdk";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { MAX_LINE_BYTES } from "../../src/rpc/framing.js";
import { startRpcServer } from "../../src/rpc/server.js";
import { SocketInUseError } from "../../src/rpc/socket.js";
import { RawClient, SAMPLE_EVENTS, startTestServer, waitFor, type TestServer } from "../support/fake-service.js";

let t: TestServer;
let client: RawClient;

const ensureParams = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  workspaceId: "ws-1",
  userId: "user-1",
  uid: 10001,
  gid: 1000,
  workspacePath: t.workspacePath,
  ...over,
});

async function call(
  method: string,
  params?: unknown,
  id: string | number = Math.floor(Math.random() * 1e9),
): Promise<Record<string, unknown>> {
  client.send(params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params });
  return client.response(id);
}

function errorOf(response: Record<string, unknown>): { code: number; message: string; data?: Record<string, unknown> } {
  assert.ok("error" in response, `expected an error, got ${JSON.stringify(response)}`);
  return response.error as { code: number; message: string; data?: Record<string, unknown> };
}

beforeEach(async () => {
  t = await startTestServer();
  client = await RawClient.connect(t.socketPath);
});

afterEach(async () => {
  client.close();
  await t.stop();
});

describe("rpc server: methods", () => {
  it("answers sidecar.health", async () => {
    const response = await call("sidecar.health", {}, 1);
    assert.deepEqual(response.id, 1);
    assert.equal(response.jsonrpc, "2.0");
    assert.equal((response.result as { version: string }).version, "0.0.0-test");
  });

  it("workspace.ensure validates, resolves the path and calls the service", async () => {
    const response = await call(
      "workspace.ensure",
      ensureParams({ git: { name: "A", email: "a@example.com" }, resources: { memoryMb: 512 }, extra: "ignored" }),
    );
    assert.equal((response.result as { created: boolean }).created, true);
    const [params] = t.service.callsOf("ensureWorkspace") as Array<Record<string, unknown>>;
    assert.equal(params?.workspacePath, await fs.realpath(t.workspacePath));
    assert.deepEqual(params?.resources, { memoryMb: 512 });
    assert.equal("extra" in (params ?? {}), false);
  });

  it("workspace.list, workspace.logs and workspace.remove round-trip", async () => {
    await call("workspace.ensure", ensureParams());
    const list = (await call("workspace.list")).result as { workspaces: Array<{ workspaceId: string }> };
    assert.deepEqual(
      list.workspaces.map((w) => w.workspaceId),
      ["ws-1"],
    );
    assert.deepEqual((await call("workspace.logs", { workspaceId: "ws-1", tail: 5 })).result, {
      logs: "logs of ws-1 (tail 5)\n",
    });
    assert.deepEqual((await call("workspace.remove", { workspaceId: "ws-1", purgeHome: true })).result, {
      removed: true,
    });
    assert.deepEqual(t.service.callsOf("removeWorkspace"), [{ workspaceId: "ws-1", purgeHome: true }]);
    assert.deepEqual((await call("workspace.remove", { workspaceId: "ws-1" })).result, { removed: false });
  });

  it("turn.run streams turn.event notifications, gap-free, before its result", async () => {
    await call("workspace.ensure", ensureParams());
    const response = await call("turn.run", { workspaceId: "ws-1", input: "hello" }, "run-1");
    const result = response.result as { turnId: string; status: string };
    assert.equal(result.status, "completed");
    const events = client
      .notifications("turn.event")
      .map((n) => n.params as { turnId: string; seq: number; event: { type: string } });
    assert.equal(events.length, SAMPLE_EVENTS.length + 1);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i),
    );
    assert.ok(events.every((e) => e.turnId === result.turnId));
    assert.equal(events[0]?.event.type, "sidecar.turn.accepted");
    const firstEventIndex = client.lines.findIndex((l) => (l as { method?: string }).method === "turn.event");
    const resultIndex = client.lines.indexOf(response);
    assert.ok(
      firstEventIndex < resultIndex && client.lines.length - 1 === resultIndex,
      "every event comes before the result",
    );
  });

  it("turn.run may carry the workspace.ensure fields", async () => {
    const response = await call("turn.run", { ...ensureParams(), input: "hi", turnId: "t-1" });
    assert.equal((response.result as { turnId: string }).turnId, "t-1");
    const [params] = t.service.callsOf("runTurn") as Array<{ workspace?: { workspacePath: string } }>;
    assert.equal(params?.workspace?.workspacePath, await fs.realpath(t.workspacePath));
  });

  it("turn.cancel reaches the service, and an unknown turn is -32004", async () => {
    await call("workspace.ensure", ensureParams());
    t.service.turnScript = () => ({ hold: true });
    client.send({
      jsonrpc: "2.0",
      id: "run",
      method: "turn.run",
      params: { workspaceId: "ws-1", input: "x", turnId: "t-9" },
    });
    await waitFor(() => t.service.turns.has("t-9"), "the turn to start");
    assert.deepEqual((await call("turn.cancel", { turnId: "t-9" })).result, { cancelled: true });
    assert.equal(((await client.response("run")).result as { status: string }).status, "cancelled");
    assert.equal(errorOf(await call("turn.cancel", { turnId: "nope" })).code, ErrorCode.unknownTurn);
  });

  it("a second turn.run on a busy workspace gets -32003 at once", async () => {
    await call("workspace.ensure", ensureParams());
    t.service.turnScript = () => ({ hold: true });
    client.send({
      jsonrpc: "2.0",
      id: "a",
      method: "turn.run",
      params: { workspaceId: "ws-1", input: "x", turnId: "t-a" },
    });
    await waitFor(() => t.service.turns.has("t-a"), "the first turn");
    assert.equal(errorOf(await call("turn.run", { workspaceId: "ws-1", input: "y" })).code, ErrorCode.workspaceBusy);
    t.service.turns.get("t-a")?.release();
    await client.response("a");
  });
});

describe("rpc server: errors", () => {
  it("answers a line that is not JSON with -32700 and id null", async () => {
    client.sendRaw("{oops\n");
    assert.equal(errorOf(await client.response(null)).code, ErrorCode.parseError);
  });

  it("answers invalid requests with -32600", async () => {
    const cases: Array<[unknown, string | number | null]> = [
      [[1, 2], null],
      ["just a string", null],
      [{ jsonrpc: "1.0", id: 11, method: "sidecar.health" }, 11],
      [{ jsonrpc: "2.0", id: { nested: true }, method: "sidecar.health" }, null],
      [{ jsonrpc: "2.0", id: 13, method: 42 }, 13],
      [{ jsonrpc: "2.0", id: 14 }, 14],
    ];
    for (const [message, id] of cases) {
      const before = client.lines.length;
      client.send(message);
      await waitFor(() => client.lines.length > before, `an answer to ${JSON.stringify(message)}`);
      const response = client.lines[before] as Record<string, unknown>;
      assert.equal(response.id, id, JSON.stringify(message));
      assert.equal(errorOf(response).code, ErrorCode.invalidRequest, JSON.stringify(message));
    }
  });

  it("answers unknown methods with -32601, prototype names included", async () => {
    for (const method of ["nope.nothing", "__proto__", "constructor", "toString", "hasOwnProperty"]) {
      const error = errorOf(await call(method, {}));
      assert.equal(error.code, ErrorCode.methodNotFound, method);
    }
  });

  it("answers bad params with -32602 naming the field", async () => {
    const cases: Array<[string, unknown, string]> = [
      ["workspace.ensure", ensureParams({ userId: undefined }), "userId"],
      ["workspace.ensure", ensureParams({ resources: { memoryMb: 1.5 } }), "resources.memoryMb"],
      ["workspace.ensure", ensureParams({ workspaceId: "../etc" }), "workspaceId"],
      ["workspace.remove", [], "params"],
      ["workspace.logs", { workspaceId: "ws-1", tail: "10" }, "tail"],
      ["turn.run", { workspaceId: "ws-1", input: "x", threadId: "my-thread" }, "threadId"],
      ["turn.run", { workspaceId: "ws-1", input: "x", options: { timeoutMs: 5 } }, "options.timeoutMs"],
      ["turn.cancel", {}, "turnId"],
    ];
    for (const [method, params, field] of cases) {
      const error = errorOf(await call(method, params));
      assert.equal(error.code, ErrorCode.invalidParams, `${method} ${field}`);
      assert.equal(error.data?.field, field);
      assert.equal(typeof error.data?.reason, "string");
    }
    assert.equal(t.service.calls.length, 0, "nothing invalid reaches the service");
  });

  it("answers policy violations with -32006", async () => {
    assert.equal(errorOf(await call("workspace.ensure", ensureParams({ uid: 0 }))).code, ErrorCode.notAllowed);
    assert.equal(
      errorOf(await call("workspace.ensure", ensureParams({ workspacePath: t.dir }))).code,
      ErrorCode.notAllowed,
    );
    // A login user's uid is below the default range (10000-65533).
    const loginUser = errorOf(await call("workspace.ensure", ensureParams({ uid: 1000 })));
    assert.deepEqual([loginUser.code, loginUser.data?.field], [ErrorCode.notAllowed, "uid"]);
    assert.equal(t.service.callsOf("ensureWorkspace").length, 0, "nothing refused reaches the service");
  });

  it("passes the service's SidecarError codes -32001..-32007 through with their data", async () => {
    const codes = [
      ErrorCode.dockerUnreachable,
      ErrorCode.unknownWorkspace,
      ErrorCode.workspaceBusy,
      ErrorCode.unknownTurn,
      ErrorCode.imageUnavailable,
      ErrorCode.notAllowed,
      ErrorCode.limitReached,
    ];
    for (const code of codes) {
      t.service.failures.set(
        "health",
        new SidecarError(code, `failure ${code}`, { data: { field: "f", reason: `why ${code}` } }),
      );
      const error = errorOf(await call("sidecar.health"));
      assert.deepEqual(error, { code, message: `failure ${code}`, data: { field: "f", reason: `why ${code}` } });
    }
  });

  it("turns an unexpected throw into -32603 with no stack on the wire, logged once", async () => {
    const boom = new Error("secret-internal-detail");
    t.service.failures.set("listWorkspaces", boom);
    const response = await call("workspace.list", {}, "boom");
    assert.deepEqual(response.error, { code: ErrorCode.internal, message: "internal error" });
    const wire = JSON.stringify(response);
    assert.doesNotMatch(wire, /secret-internal-detail|at .*\.js|stack/);
    const logged = t.logLines.filter((line) => line.includes("secret-internal-detail"));
    assert.equal(logged.length, 1);
    assert.doesNotMatch(logged[0] as string, /\.js:\d+/, "no stack in the log either");
  });

  it("refuses a line over 1 MiB with -32600 and still answers the next request", async () => {
    const huge = JSON.stringify({
      jsonrpc: "2.0",
      id: "huge",
      method: "sidecar.health",
      params: { pad: "x".repeat(MAX_LINE_BYTES) },
    });
    assert.ok(Buffer.byteLength(huge) > MAX_LINE_BYTES);
    client.sendRaw(`${huge}\n`);
    client.send({ jsonrpc: "2.0", id: "after", method: "sidecar.health" });
    const refused = await client.response(null);
    assert.equal(errorOf(refused).code, ErrorCode.invalidRequest);
    assert.ok("result" in (await client.response("after")));
    assert.equal(client.lines.filter((l) => (l as { id?: unknown }).id === "huge").length, 0);
  });

  it("accepts a line of exactly 1 MiB", async () => {
    const base = JSON.stringify({ jsonrpc: "2.0", id: "big", method: "sidecar.health", params: { pad: "" } });
    const line = JSON.stringify({
      jsonrpc: "2.0",
      id: "big",
      method: "sidecar.health",
      params: { pad: "x".repeat(MAX_LINE_BYTES - Buffer.byteLength(base)) },
    });
    assert.equal(Buffer.byteLength(line), MAX_LINE_BYTES);
    client.sendRaw(`${line}\n`);
    assert.ok("result" in (await client.response("big")));
  });

  it("ignores notifications (no id), known or not, and never answers them", async () => {
    client.send({ jsonrpc: "2.0", method: "no.such.method", params: {} });
    client.send({ jsonrpc: "2.0", method: "sidecar.health" });
    await call("sidecar.health", {}, "marker");
    assert.deepEqual(
      client.lines.map((l) => (l as { id?: unknown }).id),
      ["marker"],
    );
  });

  it("refuses a second request with an id already in flight", async () => {
    const open = t.service.gateLogs("ws-1");
    client.send({ jsonrpc: "2.0", id: 5, method: "workspace.logs", params: { workspaceId: "ws-1" } });
    await waitFor(() => t.service.callsOf("workspaceLogs").length === 1, "the first call");
    client.send({ jsonrpc: "2.0", id: 5, method: "sidecar.health" });
    await waitFor(() => client.lines.length === 1, "the refusal");
    assert.equal(errorOf(client.lines[0] as Record<string, unknown>).code, ErrorCode.invalidRequest);
    open();
    await waitFor(() => client.lines.length === 2, "the first call's answer");
    assert.ok("result" in (client.lines[1] as object));
  });
});

describe("rpc server: concurrency and disconnects", () => {
  it("runs many requests at once on one connection and answers each exactly once, in any order", async () => {
    const open = t.service.gateLogs("slow");
    client.send({ jsonrpc: "2.0", id: "slow", method: "workspace.logs", params: { workspaceId: "slow" } });
    await waitFor(() => t.service.callsOf("workspaceLogs").length === 1, "the slow call to start");
    const ids = Array.from({ length: 50 }, (_, i) => i);
    for (const id of ids)
      client.send({ jsonrpc: "2.0", id, method: id % 2 === 0 ? "sidecar.health" : "workspace.list" });
    await waitFor(() => client.lines.length === ids.length, "the fast answers");
    assert.equal(
      client.lines.some((l) => (l as { id?: unknown }).id === "slow"),
      false,
      "the slow one is still pending",
    );
    open();
    await client.response("slow");
    const answered = client.lines.map((l) => (l as { id: unknown }).id);
    assert.equal(answered.length, ids.length + 1);
    assert.deepEqual(new Set(answered), new Set([...ids, "slow"]));
    assert.equal(answered[answered.length - 1], "slow", "answered out of order");
  });

  it("aborts a turn's signal when its client disconnects mid-turn", async () => {
    await call("workspace.ensure", ensureParams());
    t.service.turnScript = () => ({ hold: true, events: SAMPLE_EVENTS.slice(0, 2) });
    client.send({
      jsonrpc: "2.0",
      id: "run",
      method: "turn.run",
      params: { workspaceId: "ws-1", input: "x", turnId: "t-dc" },
    });
    await waitFor(() => client.notifications("turn.event").length === 3, "the turn's first events");
    client.close();
    await waitFor(() => t.service.turns.get("t-dc")?.aborted === true, "the service to see the abort");
    await waitFor(() => t.server.connections === 0, "the connection to go");
    // The server keeps serving others after writing the late result to a dead socket.
    const other = await RawClient.connect(t.socketPath);
    other.send({ jsonrpc: "2.0", id: 1, method: "sidecar.health" });
    assert.ok("result" in (await other.response(1)));
    other.close();
  });

  it("drops a client that stops reading a long turn's events, and cancels its turn", async () => {
    const small = await startTestServer({ maxUnreadBytes: 256 * 1024 });
    let reader: RawClient | undefined;
    try {
      reader = await RawClient.connect(small.socketPath);
      const big = "x".repeat(1024);
      small.service.turnScript = () => ({
        hold: true,
        events: Array.from(
          { length: 5000 },
          (_, i) =>
            ({ type: "item.completed", item: { id: `i${i}`, type: "agent_message", text: big } }) as ThreadEvent,
        ),
      });
      reader.send({
        jsonrpc: "2.0",
        id: "ensure",
        method: "workspace.ensure",
        params: { ...ensureParams(), workspacePath: small.workspacePath },
      });
      assert.ok("result" in (await reader.response("ensure")));
      reader.socket.pause();
      reader.send({
        jsonrpc: "2.0",
        id: "run",
        method: "turn.run",
        params: { workspaceId: "ws-1", input: "x", turnId: "t-slow" },
      });
      await waitFor(
        () => small.service.turns.get("t-slow")?.aborted === true,
        "the stalled client's turn to be cancelled",
      );
      await waitFor(() => small.server.connections === 0, "the stalled connection to be dropped");
      assert.ok(small.logLines.some((line) => line.includes("stopped reading")));
    } finally {
      // Paused, it never reads the server's end: only destroying it closes our side.
      reader?.socket.destroy();
      await small.stop();
    }
  });

  it("cancels turns when the client half-closes, but still answers its other requests", async () => {
    await call("workspace.ensure", ensureParams());
    t.service.turnScript = () => ({ hold: true });
    const open = t.service.gateLogs("ws-1");
    client.send({
      jsonrpc: "2.0",
      id: "run",
      method: "turn.run",
      params: { workspaceId: "ws-1", input: "x", turnId: "t-eof" },
    });
    client.send({ jsonrpc: "2.0", id: "logs", method: "workspace.logs", params: { workspaceId: "ws-1" } });
    await waitFor(
      () => t.service.turns.has("t-eof") && t.service.callsOf("workspaceLogs").length === 1,
      "both calls to start",
    );
    client.socket.end();
    await waitFor(() => t.service.turns.get("t-eof")?.aborted === true, "the turn to be aborted");
    assert.equal(((await client.response("run")).result as { status: string }).status, "cancelled");
    open();
    assert.deepEqual((await client.response("logs")).result, { logs: "logs of ws-1\n" });
    await waitFor(() => client.closed, "the server to end the connection");
  });

  it("answers a one-shot request whose line ends with the input (no newline), then closes", async () => {
    client.socket.end(JSON.stringify({ jsonrpc: "2.0", id: "one-shot", method: "sidecar.health" }));
    assert.ok("result" in (await client.response("one-shot")));
    await waitFor(() => client.closed, "the server to close the connection");
  });

  it("cancels a turn.run whose client ends its input right after sending it", async () => {
    await call("workspace.ensure", ensureParams());
    t.service.turnScript = () => ({ hold: true });
    client.socket.end(
      `${JSON.stringify({ jsonrpc: "2.0", id: "run", method: "turn.run", params: { workspaceId: "ws-1", input: "x", turnId: "t-quick" } })}\n`,
    );
    assert.equal(((await client.response("run")).result as { status: string }).status, "cancelled");
    assert.equal(t.service.turns.get("t-quick")?.aborted, true);
  });

  it("close() stops accepting, ends connections and removes the socket file", async () => {
    await call("sidecar.health");
    assert.equal(t.server.connections, 1);
    await t.server.close();
    await waitFor(() => client.closed, "the client to be disconnected");
    assert.equal(t.server.connections, 0);
    await assert.rejects(fs.stat(t.socketPath), { code: "ENOENT" });
    await assert.rejects(RawClient.connect(t.socketPath));
  });
});

describe("rpc server: the socket file", () => {
  it("is created with mode 0660", async () => {
    const stat = await fs.stat(t.socketPath);
    assert.ok(stat.isSocket());
    assert.equal(stat.mode & 0o777, 0o660);
  });

  it("never steals a live socket: a second server on the same path throws", async () => {
    await assert.rejects(
      startRpcServer({
        socketPath: t.socketPath,
        service: t.service,
        policy: t.policy,
        log: silentLogger,
        version: "x",
      }),
      (error: unknown) => error instanceof SocketInUseError && error.message.includes(t.socketPath),
    );
    assert.ok("result" in (await call("sidecar.health")), "the first server still answers");
  });

  it("refuses a path that exists and is not a socket", async () => {
    const file = path.join(t.dir, "plain-file");
    await fs.writeFile(file, "keep me");
    await assert.rejects(
      startRpcServer({ socketPath: file, service: t.service, policy: t.policy, log: silentLogger, version: "x" }),
      /not a socket/,
    );
    assert.equal(await fs.readFile(file, "utf8"), "keep me");
  });
});

describe("rpc server: stale sockets, directories and groups", () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join((await import("node:os")).tmpdir(), "alive-sock-"));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("replaces a stale socket left by a dead process", async () => {
    const socketPath = path.join(dir, "stale.sock");
    // A process that listens and is killed leaves its socket file behind.
    const child = spawn(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, "SIGKILL"))`,
    ]);
    await new Promise((resolve) => child.once("exit", resolve));
    assert.ok((await fs.lstat(socketPath)).isSocket(), "the stale socket file is there");
    const server = await startRpcServer({
      socketPath,
      service: t.service,
      policy: t.policy,
      log: silentLogger,
      version: "x",
    });
    try {
      const raw = await RawClient.connect(socketPath);
      raw.send({ jsonrpc: "2.0", id: 1, method: "sidecar.health" });
      assert.ok("result" in (await raw.response(1)));
      raw.close();
    } finally {
      await server.close();
    }
  });

  it("creates a missing parent directory with mode 0750", async () => {
    const socketPath = path.join(dir, "run", "alive", "sidecar.sock");
    const server = await startRpcServer({
      socketPath,
      service: t.service,
      policy: t.policy,
      log: silentLogger,
      version: "x",
    });
    try {
      assert.equal((await fs.stat(path.dirname(socketPath))).mode & 0o777, 0o750);
    } finally {
      await server.close();
    }
  });

  it(
    "gives the socket to the configured group (numeric or by name)",
    { skip: process.getuid?.() !== 0 ? "needs root to chown" : false },
    async () => {
      const groupFile = await fs.readFile("/etc/group", "utf8");
      const line = groupFile.split("\n").find((l) => /^[a-z_][a-z0-9_-]*:[^:]*:[1-9]\d*:/.test(l));
      assert.ok(line, "a non-root group in /etc/group");
      const [name, , gid] = line.split(":");
      for (const group of [String(gid), name as string]) {
        const socketPath = path.join(dir, `group-${group}.sock`);
        const server = await startRpcServer({
          socketPath,
          socketGroup: group,
          service: t.service,
          policy: t.policy,
          log: silentLogger,
          version: "x",
        });
        try {
          assert.equal((await fs.stat(socketPath)).gid, Number(gid));
        } finally {
          await server.close();
        }
      }
    },
  );

  it("fails to start, and leaves no socket behind, when the group does not exist", async () => {
    const socketPath = path.join(dir, "nogroup.sock");
    await assert.rejects(
      startRpcServer({
        socketPath,
        socketGroup: "no-such-group-alive",
        service: t.service,
        policy: t.policy,
        log: silentLogger,
        version: "x",
      }),
      /no-such-group-alive/,
    );
    await assert.rejects(fs.stat(socketPath), { code: "ENOENT" });
  });
});
