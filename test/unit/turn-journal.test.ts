import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import {
  TRUNCATED_EVENT_TYPE,
  encodeEndRecord,
  turnsToPrune,
  type EndRecord,
  type TurnSummary,
} from "../../src/journal/journal-records.js";
import { TurnHub, type RunTurnFn } from "../../src/turns/turn-hub.js";
import { TurnJournal, type JournalLimits } from "../../src/journal/turn-journal.js";
import type { RunTurnParams, TurnHooks, TurnResult } from "../../src/service.js";
import { waitFor } from "../support/wait.js";
import { serializeMessage } from "../../src/rpc/framing.js";
import { notificationMessage } from "../../src/rpc/messages.js";
import { turnEventLine } from "../../src/rpc/protocol.js";

const waitUntil = (condition: () => boolean): Promise<true> =>
  waitFor(() => condition() || null, { timeoutMs: 5000, intervalMs: 2 });

const log = createLogger({ level: "error", write: () => undefined });
const RESTARTED = { code: "sidecar_restarted", message: "restarted" };
let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-journal-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function journal(limits: Partial<JournalLimits> = {}): TurnJournal {
  return new TurnJournal({
    dir: path.join(dir, "journal"),
    limits: { maxBytesPerTurn: 1024 * 1024, maxAgeMs: 0, maxTurns: 1000, ...limits },
    log,
  });
}

function result(turnId: string, status: TurnResult["status"] = "completed"): TurnResult {
  return {
    turnId,
    threadId: null,
    status,
    finalResponse: "done",
    items: [],
    usage: null,
    turnUsage: null,
    resources: { cpuSeconds: null, peakMemoryBytes: null, wallMs: 1 },
    tokens: { input: 0, cached: 0, output: 0, reasoning: 0 },
  };
}

const message = (i: number) => ({
  type: "item.completed",
  item: { id: `i${i}`, type: "agent_message", text: `event ${i} ✓` },
});

/** A runner whose turn emits `count` events, pausing (a macrotask) every `burst`, until `release` when `hold`. */
function scriptedRunner(
  count: number,
  options: { burst?: number; hold?: Promise<void> } = {},
): { run: RunTurnFn; signals: Array<AbortSignal | undefined> } {
  const signals: Array<AbortSignal | undefined> = [];
  const run: RunTurnFn = async (params: RunTurnParams, hooks: TurnHooks) => {
    signals.push(hooks.signal);
    if (params.workspaceId === "busy") throw new SidecarError(ErrorCode.workspaceBusy, "busy");
    const turnId = params.turnId!;
    hooks.onEvent(turnId, 0, {
      type: "sidecar.turn.accepted",
      turn_id: turnId,
      workspace_id: params.workspaceId,
      thread_id: null,
    });
    for (let i = 1; i <= count; i++) {
      hooks.onEvent(turnId, i, message(i) as never);
      if (options.burst && i % options.burst === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    if (options.hold) await options.hold;
    return result(turnId, hooks.signal?.aborted ? "cancelled" : "completed");
  };
  return { run, signals };
}

describe("turn journal files", () => {
  it("keeps every event and the result; a new journal on the same dir indexes the ended turn", async () => {
    const j = journal();
    await j.open(RESTARTED);
    const hub = new TurnHub({ journal: j, log, run: scriptedRunner(50).run });
    const seen: number[] = [];
    await hub.run({ workspaceId: "ws-1", turnId: "t-1", input: "x" }, { onEvent: (_id, seq) => seen.push(seq) });
    assert.deepEqual(
      seen,
      Array.from({ length: 51 }, (_, i) => i),
    );
    const again = journal();
    assert.deepEqual(await again.open(RESTARTED), []);
    const info = again.endedSummary("t-1");
    assert.deepEqual([info?.status, info?.lastSeq, info?.workspaceId], ["completed", 50, "ws-1"]);
    const replayed = [];
    for await (const record of again.events("t-1", 47)) replayed.push(record.seq);
    assert.deepEqual(replayed, [48, 49, 50]);
    assert.equal((await again.result("t-1"))?.finalResponse, "done");
    const stat = await fs.stat(path.join(dir, "journal"));
    assert.equal(stat.mode & 0o777, 0o700);
    assert.equal((await fs.stat(path.join(dir, "journal", "t-1.jsonl"))).mode & 0o777, 0o600);
  });

  it("past the per-turn bound writes a marker in place of the next event and keeps nothing more but the end", async () => {
    const j = journal({ maxBytesPerTurn: 2000 });
    await j.open(RESTARTED);
    await new TurnHub({ journal: j, log, run: scriptedRunner(100).run }).run(
      { workspaceId: "ws-1", turnId: "t-big", input: "x" },
      { onEvent: () => undefined },
    );
    const records = [];
    for await (const record of j.events("t-big", -1)) records.push(record);
    const last = records.at(-1)!;
    assert.equal(
      (JSON.parse(last.line) as { params: { event: { type: string } } }).params.event.type,
      TRUNCATED_EVENT_TYPE,
    );
    assert.ok(last.seq > 5 && last.seq < 100, `truncated at ${last.seq}`);
    assert.deepEqual(
      records.map((r) => r.seq),
      Array.from({ length: last.seq + 1 }, (_, i) => i),
    );
    assert.ok((await fs.stat(path.join(dir, "journal", "t-big.jsonl"))).size < 2000 + 1500);
    assert.equal((await j.result("t-big"))?.status, "completed");
  });

  it("the whole file, end line included, stays within the bound: the end line's items and final response are cut to what the events left", async () => {
    const maxBytesPerTurn = 256 * 1024;
    const j = journal({ maxBytesPerTurn });
    await j.open(RESTARTED);
    const items = Array.from({ length: 200 }, (_, i) => ({
      id: `i${i}`,
      type: "agent_message" as const,
      text: "x".repeat(2000),
    }));
    const run: RunTurnFn = async (params, hooks) => {
      const turnId = params.turnId!;
      hooks.onEvent(turnId, 0, {
        type: "sidecar.turn.accepted",
        turn_id: turnId,
        workspace_id: params.workspaceId,
        thread_id: null,
      });
      items.forEach((item, i) => hooks.onEvent(turnId, i + 1, { type: "item.completed", item }));
      return { ...result(turnId), finalResponse: "é".repeat(100_000), items };
    };
    const live = await new TurnHub({ journal: j, log, run }).run(
      { workspaceId: "ws-1", turnId: "t-full", input: "x" },
      { onEvent: () => undefined },
    );
    assert.equal(live.items.length, 200, "the live result is whole");
    assert.equal(live.itemsOmitted, undefined);
    const size = (await fs.stat(path.join(dir, "journal", "t-full.jsonl"))).size;
    assert.ok(size <= maxBytesPerTurn, `the journal holds ${size} bytes`);
    const kept = await j.result("t-full");
    assert.ok(kept !== null);
    assert.equal(kept.status, "completed");
    assert.equal(kept.finalResponseTruncated, true);
    assert.ok(
      kept.finalResponse.length > 1000 && kept.finalResponse.length < 100_000 && /^é+$/.test(kept.finalResponse),
    );
    assert.equal(kept.items.length + (kept.itemsOmitted ?? 0), 200);
    assert.ok((kept.itemsOmitted ?? 0) > 0);
    assert.deepEqual(kept.items, items.slice(0, kept.items.length), "the first items, whole");
  });

  it("an end line that fits is written as it is", () => {
    const record: EndRecord = {
      k: "end",
      turnId: "t",
      workspaceId: "w",
      startedAt: "s",
      endedAt: "e",
      status: "completed",
      lastSeq: 3,
      result: { ...result("t"), items: [{ id: "a", type: "agent_message", text: "hi" }] },
    };
    assert.equal(encodeEndRecord(record, 1_000_000), `${JSON.stringify(record)}\n`);
    const small = JSON.parse(encodeEndRecord(record, Buffer.byteLength(JSON.stringify(record)))) as EndRecord;
    assert.deepEqual(
      [small.result.items, small.result.itemsOmitted, small.result.finalResponse, small.result.finalResponseTruncated],
      [[], 1, "done", undefined],
    );
    const tiny = JSON.parse(encodeEndRecord(record, 10)) as EndRecord;
    assert.deepEqual(
      [
        tiny.result.items,
        tiny.result.itemsOmitted,
        tiny.result.finalResponse,
        tiny.result.finalResponseTruncated,
        tiny.lastSeq,
      ],
      [[], 1, "", true, 3],
    );
  });

  it("ends a turn an earlier sidecar left without a result as failed, sidecar_restarted, even after a torn line", async () => {
    const file = path.join(dir, "journal", "t-orphan.jsonl");
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const lines = [
      JSON.stringify({ k: "start", turnId: "t-orphan", workspaceId: "ws-9", startedAt: "2026-01-01T00:00:00.000Z" }),
      turnEventLine("t-orphan", 0, JSON.stringify({ type: "sidecar.turn.accepted" })).trim(),
      turnEventLine("t-orphan", 1, JSON.stringify({ type: "turn.started" })).trim(),
      turnEventLine("t-orphan", 2, JSON.stringify({ type: "item.started" })).slice(0, 70),
    ];
    await fs.writeFile(file, lines.join("\n"));
    const j = journal();
    assert.deepEqual(await j.open(RESTARTED), [{ turnId: "t-orphan", workspaceId: "ws-9" }]);
    const hub = new TurnHub({ journal: j, log, run: scriptedRunner(0).run });
    const info = await hub.get("t-orphan");
    assert.deepEqual(
      [info.status, info.lastSeq, info.workspaceId, info.result?.error?.code],
      ["failed", 1, "ws-9", "sidecar_restarted"],
    );
    const sent: number[] = [];
    const attached = await hub.attach("t-orphan", undefined, (seq) => sent.push(seq), new AbortController().signal);
    assert.deepEqual(sent, [0, 1]);
    assert.equal(attached.error?.code, "sidecar_restarted");
    // Recovered once: a later start finds it ended.
    assert.deepEqual(await journal().open(RESTARTED), []);
  });

  it("refuses a journal dir that is a symlink", async () => {
    await fs.mkdir(path.join(dir, "elsewhere"));
    await fs.symlink(path.join(dir, "elsewhere"), path.join(dir, "journal"));
    await assert.rejects(journal().open(RESTARTED), /is not a directory/);
  });

  it("prunes ended turns by age, then the oldest past the count", async () => {
    const at = (turnId: string, endedAt: string): TurnSummary => ({
      turnId,
      workspaceId: "w",
      status: "completed",
      lastSeq: 0,
      startedAt: endedAt,
      endedAt,
      detached: false,
    });
    const now = Date.parse("2026-01-10T00:00:00Z");
    const ended = [
      at("old", "2026-01-01T00:00:00Z"),
      at("a", "2026-01-09T00:00:00Z"),
      at("b", "2026-01-09T01:00:00Z"),
      at("c", "2026-01-09T02:00:00Z"),
    ];
    assert.deepEqual(turnsToPrune(ended, now, 3 * 86_400_000, 10), ["old"]);
    assert.deepEqual(turnsToPrune(ended, now, 3 * 86_400_000, 2).sort(), ["a", "old"]);
    assert.deepEqual(turnsToPrune(ended, now, 0, 10), []);

    const j = journal({ maxTurns: 2 });
    await j.open(RESTARTED);
    const hub = new TurnHub({ journal: j, log, run: scriptedRunner(1).run });
    for (const turnId of ["p-1", "p-2", "p-3"])
      await hub.run({ workspaceId: "ws-1", turnId, input: "x" }, { onEvent: () => undefined });
    assert.equal(await j.prune(), 1);
    assert.deepEqual((await fs.readdir(path.join(dir, "journal"))).sort(), ["p-2.jsonl", "p-3.jsonl"]);
    await assert.rejects(hub.get("p-1"), (error: SidecarError) => error.code === ErrorCode.unknownTurn);
  });
});

describe("turn hub", () => {
  it("an attach in the middle of a turn gets every event exactly once, in order, then the result", async () => {
    const j = journal();
    await j.open(RESTARTED);
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    const hub = new TurnHub({ journal: j, log, run: scriptedRunner(3000, { burst: 7, hold }).run });
    const running = hub.run({ workspaceId: "ws-1", turnId: "t-live", input: "x" }, { onEvent: () => undefined });
    // Attach while events are still being emitted: some come from the file, the rest live.
    await new Promise((resolve) => setImmediate(resolve));
    const sent: number[] = [];
    const attached = hub.attach("t-live", undefined, (seq) => sent.push(seq), new AbortController().signal);
    const later: number[] = [];
    await new Promise((resolve) => setImmediate(resolve));
    const attachedLate = hub.attach("t-live", 1500, (seq) => later.push(seq), new AbortController().signal);
    await waitUntil(() => (hub.list({ status: "running" })[0]?.lastSeq ?? 0) === 3000);
    release();
    assert.equal((await attached).status, "completed");
    assert.equal((await attachedLate).status, "completed");
    await running;
    assert.deepEqual(
      sent,
      Array.from({ length: 3001 }, (_, i) => i),
    );
    assert.deepEqual(
      later,
      Array.from({ length: 1500 }, (_, i) => 1501 + i),
    );
  });

  it("'continue' keeps the client's signal away from the runner and counts the turn detached once its client is gone", async () => {
    const j = journal();
    await j.open(RESTARTED);
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    const runner = scriptedRunner(2, { hold });
    const hub = new TurnHub({ journal: j, log, run: runner.run });
    const client = new AbortController();
    const delivered: number[] = [];
    const running = hub.run(
      { workspaceId: "ws-1", turnId: "t-cont", input: "x", options: { onDisconnect: "continue" } },
      { onEvent: (_id, seq) => delivered.push(seq), signal: client.signal },
    );
    await waitUntil(() => hub.list()[0]?.lastSeq === 2);
    assert.equal(runner.signals[0], undefined);
    assert.equal(hub.detached, 0);
    client.abort();
    assert.equal(hub.detached, 1);
    assert.equal(hub.list({ workspaceId: "ws-1" })[0]?.detached, true);
    const attachSignal = new AbortController();
    const attached = hub.attach("t-cont", 1, () => undefined, attachSignal.signal);
    await waitUntil(() => hub.detached === 0);
    release();
    assert.equal((await attached).status, "completed");
    assert.equal((await running).status, "completed");
    assert.deepEqual(delivered, [0, 1, 2]);
    assert.equal(hub.detached, 0);
    assert.deepEqual(
      hub.list({ status: "completed" }).map((t) => t.turnId),
      ["t-cont"],
    );
  });

  it("'cancel' (the default) hands the client's signal to the runner", async () => {
    const j = journal();
    await j.open(RESTARTED);
    const runner = scriptedRunner(1);
    const hub = new TurnHub({ journal: j, log, run: runner.run });
    const client = new AbortController();
    await hub.run(
      { workspaceId: "ws-1", turnId: "t-c", input: "x" },
      { onEvent: () => undefined, signal: client.signal },
    );
    assert.equal(runner.signals[0], client.signal);
  });

  it("a refused turn leaves no journal and does not touch a running turn with its id; unknown turns are -32004", async () => {
    const j = journal();
    await j.open(RESTARTED);
    const hub = new TurnHub({ journal: j, log, run: scriptedRunner(1).run });
    await assert.rejects(
      hub.run({ workspaceId: "busy", turnId: "t-refused", input: "x" }, { onEvent: () => undefined }),
      (error: SidecarError) => error.code === ErrorCode.workspaceBusy,
    );
    assert.deepEqual(await fs.readdir(path.join(dir, "journal")), []);
    await assert.rejects(
      hub.get("t-refused"),
      (error: SidecarError) => error.code === ErrorCode.unknownTurn && error.data?.field === "turnId",
    );
    await assert.rejects(
      hub.attach("t-refused", undefined, () => undefined, new AbortController().signal),
      (error: SidecarError) => error.code === ErrorCode.unknownTurn,
    );
    assert.deepEqual(hub.list(), []);
  });

  it("an attacher that goes away stops receiving; the turn is unaffected", async () => {
    const j = journal();
    await j.open(RESTARTED);
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    const hub = new TurnHub({ journal: j, log, run: scriptedRunner(1, { hold }).run });
    const running = hub.run({ workspaceId: "ws-1", turnId: "t-a", input: "x" }, { onEvent: () => undefined });
    const gone = new AbortController();
    const attached = hub.attach("t-a", undefined, () => undefined, gone.signal);
    await waitUntil(() => hub.list()[0]?.lastSeq === 1);
    gone.abort(new Error("gone"));
    await assert.rejects(attached, /gone/);
    release();
    assert.equal((await running).status, "completed");
  });
});

describe("turn.event from the event's JSON", () => {
  it("is the line serializeMessage makes of the notification", () => {
    const event = {
      type: "item.completed",
      item: { id: "i1", type: "agent_message", text: 'quote " newline \n unicode ✓ \u2028' },
    };
    for (const turnId of ["turn-1", "t.with-odd_chars"]) {
      assert.equal(
        turnEventLine(turnId, 42, JSON.stringify(event)),
        serializeMessage(notificationMessage("turn.event", { turnId, seq: 42, event })),
      );
    }
  });
});
