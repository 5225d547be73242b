/**
 * The parts that let a turn outlive its sidecar, without an engine: the turn's files in the
 * tenant's TMPDIR (made and reopened safely), following them, the turn records, the state dir's
 * format, waiting for an exec's exit, a restored credential, and what start-up decides for each
 * turn an earlier sidecar left.
 */
import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FileFollower } from "../../src/codex/file-follower.js";
import {
  containerTurnFile,
  createTurnFiles,
  isTurnFileBase,
  newTurnFileNames,
  removeTurnFiles,
  reopenTurnFiles,
} from "../../src/codex/turn-files.js";
import type { ExecState } from "../../src/docker/engine-port.js";
import { createLogger } from "../../src/log.js";
import { TurnCredentials, credentialDigest } from "../../src/model-proxy/credentials.js";
import { STATE_FORMAT, claimStateFormat } from "../../src/state-format.js";
import { ExecExitWatch } from "../../src/turns/exec-exit.js";
import { planAdoption } from "../../src/turns/turn-adoption.js";
import { TURN_RECORD_FORMAT, TurnRecords, type TurnRecord } from "../../src/turns/turn-records.js";
import type { UnfinishedTurn } from "../../src/journal/turn-journal.js";
import type { WorkspaceRecord } from "../../src/workspace/record.js";
import { waitFor } from "../support/wait.js";

const log = createLogger({ level: "error", write: () => undefined });
let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "turn-continuity-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe("a turn's files in the workspace's TMPDIR", () => {
  test("are made by name, never over what the tenant put there, handed to the workspace's uid", async () => {
    const names = newTurnFileNames("turn-1");
    assert.equal(containerTurnFile(names, "out"), `/tmp/${names.base}.out`);
    const files = await createTurnFiles(dir, names, { uid: 10_001, gid: 10_002 }, Buffer.from("the prompt"));
    await Promise.all([files.out.close(), files.err.close()]);
    const stat = await fs.stat(path.join(dir, `${names.base}.out`));
    assert.deepEqual([stat.uid, stat.gid, stat.mode & 0o777], [10_001, 10_002, 0o600]);
    assert.equal(await fs.readFile(path.join(dir, `${names.base}.in`), "utf8"), "the prompt");

    // A name the tenant made first (here a symlink to a file of root's) is refused, and nothing is left.
    const taken = newTurnFileNames("turn-2");
    const secret = path.join(dir, "root-only");
    await fs.writeFile(secret, "secret");
    await fs.symlink(secret, path.join(dir, `${taken.base}.err`));
    await assert.rejects(createTurnFiles(dir, taken, { uid: 10_001, gid: 10_001 }, Buffer.from("p")), /EEXIST/);
    await assert.rejects(fs.stat(path.join(dir, `${taken.base}.in`)), { code: "ENOENT" });
    assert.equal(await fs.readFile(secret, "utf8"), "secret");
  });

  test("reopen refuses a symlink or a FIFO put in their place; remove leaves nothing", async () => {
    const names = newTurnFileNames("turn-3");
    const files = await createTurnFiles(dir, names, { uid: 0, gid: 0 }, Buffer.alloc(0));
    await Promise.all([files.out.close(), files.err.close()]);
    const reopened = await reopenTurnFiles(dir, names);
    assert.ok(reopened);
    await Promise.all([reopened.out.close(), reopened.err.close()]);

    await fs.rm(path.join(dir, `${names.base}.out`));
    await fs.symlink("/etc/passwd", path.join(dir, `${names.base}.out`));
    assert.equal(await reopenTurnFiles(dir, names), null);
    await fs.rm(path.join(dir, `${names.base}.out`));
    const { execa } = await import("execa");
    await execa("mkfifo", [path.join(dir, `${names.base}.out`)]);
    assert.equal(await reopenTurnFiles(dir, names), null, "a FIFO neither blocks the open nor is followed");

    await removeTurnFiles(dir, names);
    assert.deepEqual(await fs.readdir(dir), []);
    // A name that is not one of ours (a corrupt record) is never opened.
    assert.equal(isTurnFileBase("../../etc/passwd"), false);
    assert.equal(await reopenTurnFiles(dir, { base: "../../etc/passwd" }), null);
  });
});

describe("following a file", () => {
  test("passes on every byte as it is appended, and the rest at finish", async () => {
    const file = path.join(dir, "out");
    await fs.writeFile(file, "one\n");
    const handle = await fs.open(file, "r");
    const got: Buffer[] = [];
    const follower = new FileFollower(handle, { write: (chunk) => void got.push(chunk) }, { path: file, pollMs: 5000 });
    await waitFor(() => Buffer.concat(got).toString() === "one\n", { timeoutMs: 5000, what: "the first line" });
    await fs.appendFile(file, "two\n");
    // Seen through inotify: the poll here is far longer than the wait.
    await waitFor(() => Buffer.concat(got).toString() === "one\ntwo\n", { timeoutMs: 2000, what: "the append" });
    await fs.appendFile(file, "three");
    await follower.finish();
    assert.equal(Buffer.concat(got).toString(), "one\ntwo\nthree");
    assert.equal(follower.offset, "one\ntwo\nthree".length);
    await handle.close();
  });

  test("waits for a slow sink (backpressure) and stop ends it at once", async () => {
    const file = path.join(dir, "big");
    await fs.writeFile(file, Buffer.alloc(256 * 1024, 0x61));
    const handle = await fs.open(file, "r");
    let release: (() => void) | null = null;
    let chunks = 0;
    const follower = new FileFollower(handle, {
      write: () => {
        chunks += 1;
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    await waitFor(() => chunks === 1, { timeoutMs: 2000, what: "the first chunk" });
    const stopped = follower.stop();
    (release as (() => void) | null)?.();
    await stopped;
    assert.equal(chunks, 1, "nothing more was read while the sink held the first chunk, nor after the stop");
    await handle.close();
  });
});

function sampleRecord(overrides: Partial<TurnRecord> = {}): TurnRecord {
  return {
    format: TURN_RECORD_FORMAT,
    sidecarVersion: "0.2.0",
    turnId: "turn-a",
    workspaceId: "ws-a",
    containerId: "c-a",
    execId: "e-a",
    files: newTurnFileNames("turn-a").base,
    credentialDigest: credentialDigest(new TurnCredentials().issue({})),
    threadId: null,
    startedAt: 1,
    deadlineAt: 2,
    timeoutMs: 1,
    budget: { tokens: 1000, cpuSeconds: null },
    tokens: { input: 3, cached: 0, output: 2, reasoning: 0 },
    totalTokens: 5,
    cpuStartNs: null,
    ...overrides,
  };
}

describe("turn records", () => {
  test("are written root-only, read back, and what does not parse is dropped", async () => {
    const { records, saved } = await TurnRecords.openIn(dir, log);
    assert.deepEqual(saved, []);
    const record = sampleRecord();
    await Promise.all([records.write({ ...record, totalTokens: 1 }), records.write(record)]);
    assert.equal((await fs.stat(path.join(dir, "turns"))).mode & 0o777, 0o700);
    assert.equal((await fs.stat(path.join(dir, "turns", "turn-a.json"))).mode & 0o777, 0o600);
    assert.deepEqual(await records.list(), [record], "the last write wins");
    await fs.writeFile(
      path.join(dir, "turns", "turn-b.json"),
      JSON.stringify({ ...record, turnId: "turn-b", format: 9 }),
    );
    await fs.writeFile(
      path.join(dir, "turns", "turn-c.json"),
      JSON.stringify({ ...record, turnId: "turn-c", files: "../../etc" }),
    );
    assert.deepEqual(
      (await records.list()).map((r) => r.turnId),
      ["turn-a"],
    );
    assert.deepEqual((await fs.readdir(path.join(dir, "turns"))).sort(), ["turn-a.json"]);
    await records.remove("turn-a");
    assert.deepEqual(await records.list(), []);
  });
});

describe("the state dir's format", () => {
  test("a state dir of the previous release is taken and upgraded; a newer one is refused, naming both versions", async () => {
    assert.equal(await claimStateFormat(dir, "0.2.0"), 1);
    assert.equal(await claimStateFormat(dir, "0.2.0"), STATE_FORMAT);
    await fs.writeFile(
      path.join(dir, "state-format.json"),
      JSON.stringify({ format: STATE_FORMAT + 1, writtenBy: "9.0.0" }),
    );
    await assert.rejects(
      claimStateFormat(dir, "0.2.0"),
      /last used by alive-codex-sidecar 9\.0\.0 \(state format 3\); this sidecar \(0\.2\.0\) knows state formats up to 2/,
    );
  });
});

describe("waiting for codex's exit", () => {
  test("asks the engine until the exec is no longer running; null once the engine does not know it", async () => {
    let asks = 0;
    let state: ExecState | null = { running: true, exitCode: null, containerId: "c" };
    const watch = new ExecExitWatch({ inspectExec: async () => (asks++, state) }, "e");
    const exited = watch.exited();
    await waitFor(() => asks >= 2, { timeoutMs: 2000, what: "a second ask" });
    state = { running: false, exitCode: 3, containerId: "c" };
    watch.poke();
    assert.equal(await exited, 3);
    state = null;
    assert.equal(await new ExecExitWatch({ inspectExec: async () => state }, "e").exited(), null);
    const stopped = new ExecExitWatch(
      { inspectExec: async () => ({ running: true, exitCode: null, containerId: "c" }) },
      "e",
    );
    const waiting = stopped.exited();
    stopped.stop();
    assert.equal(await waiting, null);
  });
});

describe("a credential across a restart", () => {
  test("is accepted again from its digest alone, and revoked by it", () => {
    const before = new TurnCredentials<string>();
    const token = before.issue("turn");
    const after = new TurnCredentials<string>();
    assert.equal(after.resolve(token), null);
    after.restore(credentialDigest(token), "turn");
    assert.equal(after.resolve(token), "turn");
    assert.equal(after.revokeDigest(credentialDigest(token)), true);
    assert.equal(after.resolve(token), null);
  });
});

describe("start-up: what becomes of each turn an earlier sidecar left", () => {
  test("adopted where its container and exec live on; ended otherwise, with a code saying why", async () => {
    const ended: Array<[string, string]> = [];
    const removed: string[] = [];
    const tmp = path.join(dir, "tmp");
    await fs.mkdir(tmp);
    const workspace = (containerId: string, state = "running") =>
      ({ containerId, state, paths: { tmp } }) as unknown as WorkspaceRecord;
    const workspaces: Record<string, WorkspaceRecord> = {
      "ws-live": workspace("c-live"),
      "ws-exited": workspace("c-exited", "exited"),
      "ws-noexec": workspace("c-noexec"),
    };
    const execs: Record<string, ExecState> = {
      "e-live": { running: true, exitCode: null, containerId: "c-live" },
      "e-done": { running: false, exitCode: 0, containerId: "c-live" },
    };
    const turn = (turnId: string, workspaceId: string): UnfinishedTurn => ({
      turnId,
      workspaceId,
      startedAt: null,
      lastSeq: 4,
      keep: 100,
    });
    const rec = (turnId: string, workspaceId: string, containerId: string, execId: string): TurnRecord =>
      sampleRecord({ turnId, workspaceId, containerId, execId, files: newTurnFileNames(turnId).base });
    const plan = await planAdoption(
      {
        journal: { endUnfinished: async (t, error) => void ended.push([t.turnId, error.code]) },
        records: { remove: async (turnId) => void removed.push(turnId) },
        workspaces: { find: (id) => workspaces[id] },
        engine: { inspectExec: async (id) => execs[id] ?? null },
        log,
      },
      [
        turn("t-running", "ws-live"),
        turn("t-exited-in-gap", "ws-live"),
        turn("t-old-release", "ws-live"),
        turn("t-container-died", "ws-exited"),
        turn("t-exec-unknown", "ws-noexec"),
        turn("t-workspace-unknown", "ws-unknown"),
      ],
      [
        rec("t-running", "ws-live", "c-live", "e-live"),
        rec("t-exited-in-gap", "ws-live", "c-live", "e-done"),
        rec("t-container-died", "ws-exited", "c-exited", "e-x"),
        rec("t-exec-unknown", "ws-noexec", "c-noexec", "e-gone"),
        // Not adopted at start-up (the engine did not answer, say): not known to have died.
        rec("t-workspace-unknown", "ws-unknown", "c-unknown", "e-live"),
        rec("t-ended-already", "ws-live", "c-live", "e-live"),
      ],
    );
    assert.deepEqual(
      plan.adopt.map((a) => a.turn.turnId),
      ["t-running", "t-exited-in-gap"],
    );
    assert.deepEqual(ended, [
      ["t-old-release", "sidecar_restarted"],
      ["t-container-died", "container_died"],
      ["t-exec-unknown", "sidecar_restarted"],
      ["t-workspace-unknown", "sidecar_restarted"],
    ]);
    assert.deepEqual(removed.sort(), ["t-container-died", "t-ended-already", "t-exec-unknown", "t-workspace-unknown"]);
  });
});
