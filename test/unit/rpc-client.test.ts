import assert from "node:assert/strict";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import {
  ErrorCode,
  SidecarClient,
  SidecarConnectionError,
  SidecarRpcError,
  type TurnEventMessage,
} from "../../src/index.js";
import { SAMPLE_EVENTS, startTestServer, waitFor, type TestServer } from "../support/fake-service.js";

let t: TestServer;
let client: SidecarClient;

beforeEach(async () => {
  t = await startTestServer({ closeGraceMs: 50 });
  client = await SidecarClient.connect(t.socketPath);
});

afterEach(async () => {
  await client.close();
  await t.stop();
});

const ensure = () =>
  client.ensureWorkspace({ workspaceId: "ws-1", userId: "u-1", uid: 10001, gid: 1000, workspacePath: t.workspacePath });

async function collect(iterable: AsyncIterable<TurnEventMessage>): Promise<TurnEventMessage[]> {
  const out: TurnEventMessage[] = [];
  for await (const message of iterable) out.push(message);
  return out;
}

describe("SidecarClient", () => {
  it("rejects connect with SidecarConnectionError when nothing is there", async () => {
    await assert.rejects(SidecarClient.connect(path.join(t.dir, "missing.sock")), (error: unknown) => {
      assert.ok(error instanceof SidecarConnectionError);
      assert.match(error.message, /missing\.sock/);
      return true;
    });
  });

  it("round-trips every method", async () => {
    assert.equal((await client.health()).version, "0.0.0-test");
    const ensured = await ensure();
    assert.deepEqual([ensured.workspaceId, ensured.created], ["ws-1", true]);
    assert.deepEqual(
      (await client.listWorkspaces()).workspaces.map((w) => w.workspaceId),
      ["ws-1"],
    );
    assert.deepEqual(await client.workspaceLogs("ws-1", 3), { logs: "logs of ws-1 (tail 3)\n" });
    assert.deepEqual(await client.workspaceLogs("ws-1"), { logs: "logs of ws-1\n" });
    assert.deepEqual(await client.removeWorkspace("ws-1", { purgeHome: true }), { removed: true });
    assert.deepEqual(t.service.callsOf("removeWorkspace"), [{ workspaceId: "ws-1", purgeHome: true }]);
  });

  it("runTurn yields the events in order, then the result", async () => {
    await ensure();
    const run = client.runTurn({ workspaceId: "ws-1", input: "hello" });
    const events = await collect(run);
    const result = await run.result;
    assert.equal(result.status, "completed");
    assert.equal(await run.turnId, result.turnId);
    assert.match(result.turnId, /^turn-/, "the client picks a turn id when none is given");
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i),
    );
    assert.deepEqual(
      events.slice(1).map((e) => e.event),
      SAMPLE_EVENTS,
    );
    assert.equal(events[0]?.event.type, "sidecar.turn.accepted");
  });

  it("reads the sidecar's lines past the 1 MiB its own requests are held to: a 5 MiB event and a 5 MiB result", async () => {
    await ensure();
    const text = "é".repeat(2.5 * 1024 * 1024);
    t.service.turnScript = () => ({
      events: [{ type: "item.completed", item: { id: "m", type: "agent_message", text } }],
      finalResponse: text,
    });
    const run = client.runTurn({ workspaceId: "ws-1", input: "long answer" });
    const events = await collect(run);
    assert.equal((events[1]?.event as { item: { text: string } }).item.text, text);
    assert.equal((await run.result).finalResponse, text);
  });

  it("keeps the events of two turns on one connection apart", async () => {
    await ensure();
    await client.ensureWorkspace({
      workspaceId: "ws-2",
      userId: "u-2",
      uid: 10002,
      gid: 1000,
      workspacePath: t.workspacePath,
    });
    const a = client.runTurn({ workspaceId: "ws-1", input: "a", turnId: "turn-a" });
    const b = client.runTurn({ workspaceId: "ws-2", input: "b", turnId: "turn-b" });
    const [eventsA, eventsB] = await Promise.all([collect(a), collect(b)]);
    assert.equal(eventsA.length, SAMPLE_EVENTS.length + 1);
    assert.equal(eventsB.length, SAMPLE_EVENTS.length + 1);
    assert.equal((eventsA[0]?.event as { turn_id: string }).turn_id, "turn-a");
    assert.equal((eventsB[0]?.event as { turn_id: string }).turn_id, "turn-b");
  });

  it("aborting the signal sends turn.cancel and the result comes back cancelled", async () => {
    await ensure();
    t.service.turnScript = () => ({ hold: true });
    const controller = new AbortController();
    const run = client.runTurn({ workspaceId: "ws-1", input: "long" }, { signal: controller.signal });
    const turnId = await run.turnId;
    controller.abort();
    const result = await run.result;
    assert.equal(result.status, "cancelled");
    assert.deepEqual(t.service.callsOf("cancelTurn"), [{ turnId }]);
  });

  it("an abort before the first event still cancels, once the turn is known", async () => {
    await ensure();
    t.service.turnScript = () => ({ hold: true });
    const controller = new AbortController();
    const run = client.runTurn(
      { workspaceId: "ws-1", input: "long", turnId: "turn-early" },
      { signal: controller.signal },
    );
    controller.abort();
    assert.equal((await run.result).status, "cancelled");
    assert.deepEqual(t.service.callsOf("cancelTurn"), [{ turnId: "turn-early" }]);
  });

  it("a signal aborted up front never starts the turn", async () => {
    const run = client.runTurn({ workspaceId: "ws-1", input: "x" }, { signal: AbortSignal.abort() });
    await assert.rejects(run.result, { name: "AbortError" });
    await assert.rejects(run.turnId);
    assert.equal(t.service.callsOf("runTurn").length, 0);
  });

  it("rejects with SidecarRpcError carrying code and data; the iterator throws it too", async () => {
    await assert.rejects(
      client.ensureWorkspace({ workspaceId: "ws-1", userId: "u", uid: 0, gid: 1000, workspacePath: t.workspacePath }),
      (error: unknown) => {
        assert.ok(error instanceof SidecarRpcError);
        assert.equal(error.code, ErrorCode.notAllowed);
        assert.equal(error.data?.field, "uid");
        return true;
      },
    );
    const run = client.runTurn({ workspaceId: "nowhere", input: "x" });
    await assert.rejects(
      collect(run),
      (error: unknown) => error instanceof SidecarRpcError && error.code === ErrorCode.unknownWorkspace,
    );
    await assert.rejects(run.result, SidecarRpcError);
    await assert.rejects(
      client.cancelTurn("turn-none"),
      (error: unknown) => error instanceof SidecarRpcError && error.code === ErrorCode.unknownTurn,
    );
  });

  it("a call's own signal abandons it locally", async () => {
    t.service.gateLogs("ws-1");
    const controller = new AbortController();
    const pending = client.workspaceLogs("ws-1", undefined, { signal: controller.signal });
    await waitFor(() => t.service.callsOf("workspaceLogs").length === 1, "the call to reach the service");
    controller.abort();
    await assert.rejects(pending, { name: "AbortError" });
    assert.equal((await client.health()).version, "0.0.0-test", "the connection is still fine");
  });

  it("rejects every pending call when the connection is lost", async () => {
    t.service.gateLogs("ws-1");
    t.service.gateLogs("ws-2");
    const calls = [client.workspaceLogs("ws-1"), client.workspaceLogs("ws-2")];
    await waitFor(() => t.service.callsOf("workspaceLogs").length === 2, "both calls to reach the service");
    const rejected = Promise.all(
      calls.map((call) =>
        assert.rejects(
          call,
          (error: unknown) => error instanceof SidecarConnectionError && /closed/.test(error.message),
        ),
      ),
    );
    await t.server.close();
    await rejected;
    await assert.rejects(client.health(), SidecarConnectionError);
  });
});
