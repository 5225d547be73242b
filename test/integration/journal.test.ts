/**
 * Turns that outlive their client: the real sidecar behind its RPC server, the real codex against the
 * scripted model. A client that goes away mid-turn with onDisconnect "continue" leaves the turn
 * running; a new connection attaches and gets the rest, every event once, then the result.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { TurnEventMessage } from "../../src/rpc/client.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import { startRpcHarness, type RpcHarness, type WireMessage } from "../support/rpc-harness.js";
import { startGatewayStub, uniqueId } from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

interface WireEvent {
  seq: number;
  event: { type: string; item?: { type?: string } };
}

const turnEvents = (messages: readonly WireMessage[], turnId: string): WireEvent[] =>
  messages
    .filter((m) => m.method === "turn.event" && (m.params as { turnId?: string }).turnId === turnId)
    .map((m) => m.params as WireEvent);

async function collect(run: AsyncIterable<TurnEventMessage>): Promise<TurnEventMessage[]> {
  const out: TurnEventMessage[] = [];
  for await (const message of run) out.push(message);
  return out;
}

describe("turns that outlive their client", () => {
  let stub: ResponsesStub;
  let h: RpcHarness;
  before(async () => {
    stub = await startGatewayStub();
    h = await startRpcHarness({ stub });
  });
  after(async () => {
    await h?.close();
    await stub?.close();
  });

  test('a client that disconnects mid-turn with "continue": the turn runs on, detached; a new connection attaches after its last seq and gets every event once, then the result', async () => {
    const ws = await h.t.workspace();
    const setup = await h.client();
    await setup.ensureWorkspace(ws);
    const release = path.join(ws.workspacePath, "release");
    // The command waits for a file the test makes once the first client is gone.
    stub.respondWith((request) =>
      !JSON.stringify(request.body).includes("function_call_output")
        ? { kind: "command", cmd: "while [ ! -f release ]; do sleep 0.05; done; echo released-after-reattach" }
        : { kind: "message", text: "finished while reattached" },
    );
    const turnId = uniqueId("turn-continue");
    const first = await h.raw();
    const request = first.call("turn.run", {
      workspaceId: ws.workspaceId,
      turnId,
      input: "wait for release",
      options: { onDisconnect: "continue" },
    });
    request.catch(() => undefined);
    await waitFor(() => turnEvents(first.messages, turnId).some((e) => e.event.type === "item.started"), {
      timeoutMs: 30_000,
      what: "the command to start",
    });
    const seenFirst = turnEvents(first.messages, turnId);
    first.socket.destroy();

    // The turn runs on without a client: health counts it detached, turn.get says running.
    const other = await h.client();
    await waitFor(async () => (await other.health()).turns.detached === 1, {
      timeoutMs: 10_000,
      what: "health to count the turn detached",
    });
    const running = await other.getTurn(turnId);
    assert.deepEqual([running.status, running.detached, running.result], ["running", true, null]);
    assert.ok(running.lastSeq >= seenFirst.at(-1)!.seq);
    assert.deepEqual(
      (await other.listTurns({ workspaceId: ws.workspaceId, status: "running" })).turns.map((t) => t.turnId),
      [turnId],
    );

    // Two connections attach: one after what the first client saw, one from the start.
    const lastSeen = seenFirst.at(-1)!.seq;
    const resumed = other.attachTurn(turnId, { afterSeq: lastSeen });
    const third = await h.client();
    const whole = third.attachTurn(turnId);
    const resumedEvents = collect(resumed);
    const wholeEvents = collect(whole);
    await waitFor(async () => (await other.health()).turns.detached === 0, {
      timeoutMs: 10_000,
      what: "the attach to count",
    });
    await fs.writeFile(release, "go\n");
    const result = await resumed.result;
    assert.equal(result.status, "completed");
    assert.equal(result.finalResponse, "finished while reattached");
    assert.deepEqual(await whole.result, result);

    // Every event exactly once across the two connections, in order, no gap; the result after the last.
    const union = [...seenFirst.map((e) => e.seq), ...(await resumedEvents).map((e) => e.seq)];
    assert.deepEqual(
      union,
      Array.from({ length: union.length }, (_, i) => i),
      `seqs: ${union.join(",")}`,
    );
    const all = await wholeEvents;
    assert.deepEqual(
      all.map((e) => e.seq),
      union,
    );
    assert.deepEqual(
      all.slice(0, seenFirst.length),
      seenFirst.map((e) => ({ seq: e.seq, event: e.event })),
    );
    assert.equal(all.at(-1)?.event.type, "turn.completed");
    assert.ok(
      all.some((e) => e.event.type === "item.completed" && JSON.stringify(e.event).includes("released-after-reattach")),
    );

    // After the end: turn.get and an attach from the journal alone tell the same story.
    const ended = await other.getTurn(turnId);
    assert.deepEqual(
      [ended.status, ended.lastSeq, ended.detached, ended.result?.finalResponse],
      ["completed", union.at(-1), false, "finished while reattached"],
    );
    const replay = other.attachTurn(turnId, { afterSeq: 2 });
    assert.deepEqual(
      (await collect(replay)).map((e) => e.seq),
      union.slice(3),
    );
    assert.equal((await other.health()).turns.detached, 0);
  });

  test("the journal is root's, outside every workspace: <state>/journal/<turnId>.jsonl, mode 0600 in a 0700 dir", async () => {
    const ws = await h.t.workspace();
    const client = await h.client();
    await client.ensureWorkspace(ws);
    stub.respondWith(undefined);
    stub.script({ kind: "message", text: "journaled" });
    const turnId = uniqueId("turn-file");
    const run = client.runTurn({ workspaceId: ws.workspaceId, turnId, input: "hi" });
    const events = await collect(run);
    const dir = path.join(h.t.stateDir, "journal");
    const [dirStat, fileStat] = await Promise.all([fs.stat(dir), fs.stat(path.join(dir, `${turnId}.jsonl`))]);
    assert.deepEqual(
      [dirStat.uid, dirStat.mode & 0o777, fileStat.uid, fileStat.mode & 0o777],
      [process.getuid!(), 0o700, process.getuid!(), 0o600],
    );
    // Besides its start and end lines, the journal holds each event's turn.event line as the client got it.
    const lines = (await fs.readFile(path.join(dir, `${turnId}.jsonl`), "utf8"))
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as { k?: string; method?: string; params?: { turnId: string; seq: number; event: unknown } },
      );
    assert.deepEqual(
      lines.map((l) => l.k ?? l.method),
      ["start", ...events.map(() => "turn.event"), "end"],
    );
    assert.deepEqual(
      lines.slice(1, -1).map((l) => l.params),
      events.map((e) => ({ turnId, seq: e.seq, event: e.event })),
    );
  });

  test("unknown turns are -32004 for turn.attach and turn.get; bad params name the field", async () => {
    const raw = await h.raw();
    const attach = await raw.call("turn.attach", { turnId: "turn-never-seen" });
    assert.equal(attach.error?.code, -32004);
    const get = await raw.call("turn.get", { turnId: "turn-never-seen" });
    assert.deepEqual([get.error?.code, get.error?.data?.field], [-32004, "turnId"]);
    const bad = await raw.call("turn.attach", { turnId: "t", afterSeq: 1.5 });
    assert.deepEqual([bad.error?.code, bad.error?.data?.field], [-32602, "afterSeq"]);
    const badStatus = await raw.call("turn.list", { status: "sleeping" });
    assert.deepEqual([badStatus.error?.code, badStatus.error?.data?.field], [-32602, "status"]);
    const badPolicy = await raw.call("turn.run", {
      workspaceId: "ws-x",
      input: "x",
      options: { onDisconnect: "later" },
    });
    assert.deepEqual([badPolicy.error?.code, badPolicy.error?.data?.field], [-32602, "options.onDisconnect"]);
  });
});
