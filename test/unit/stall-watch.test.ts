/**
 * The stall watch's rules (src/codex/stall-watch.ts) over process listings as the sandbox gives them:
 * what counts as a child codex missed, when the turn is declared stalled,
 * and the watch's timer (quiet turns only, stopped with the turn). The watch against a real gVisor
 * sandbox, with a stall injected, is test/integration/stall-watch.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_STALL_TIMINGS,
  StallWatch,
  decideLook,
  newWatchMemory,
  parseProcList,
  unreapedChildren,
  type ProcEntry,
} from "../../src/codex/stall-watch.js";
import { waitFor } from "../support/wait.js";

/** The listing of the stall seen under gVisor (bench/runsc-stall.ts, stage first-model-request), shortened. */
const STALLED_LISTING = [
  "1 0 S 0 docker-init | /sbin/docker-init -- /bin/sh -c (while :; do socat ...",
  "(while :; do socat TCP-LISTEN:3129,bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:/run/alive/net/model.sock 2>/dev/null; sleep 1; done) &",
  "6 2 S 0 cat | cat /run/alive/log ",
  "73 0 S 111 codex | codex exec --experimental-json --config features.plugins=false",
  "130 73 Z 15 bash | ",
  '131 0 R 0 sh | /bin/sh -c for p in /proc/[0-9]*; do read -r s < "$p/stat"',
].join("\n");

const proc = (pid: number, ppid: number, state: string, comm: string): ProcEntry => ({
  pid,
  ppid,
  state,
  ticks: 0,
  comm,
});
const TIMINGS = { ...DEFAULT_STALL_TIMINGS, stallLooks: 3 };

describe("the stall watch", () => {
  test("parses the sandbox's listing, continuation lines of a multi-line cmdline skipped", () => {
    const procs = parseProcList(STALLED_LISTING);
    assert.deepEqual(
      procs.map((p) => `${p.pid}/${p.ppid}/${p.state}/${p.comm}`),
      ["1/0/S/docker-init", "6/2/S/cat", "73/0/S/codex", "130/73/Z/bash", "131/0/R/sh"],
    );
    assert.equal(procs.find((p) => p.pid === 73)?.ticks, 111);
  });

  test("a zombie child of codex (parent pid 0, named codex) is a missed exit; other zombies are not codex's business", () => {
    assert.deepEqual([...unreapedChildren(parseProcList(STALLED_LISTING))], [[73, [130]]]);
    // A zombie of a tenant's process, of a codex not exec'd from outside, a live child of codex: none.
    assert.equal(
      unreapedChildren([
        proc(9, 0, "S", "codex"),
        proc(10, 9, "S", "bash"),
        proc(11, 10, "Z", "sleep"),
        proc(20, 5, "S", "codex"),
        proc(21, 20, "Z", "bash"),
      ]).size,
      0,
    );
  });

  test("a zombie under codex seen on stallLooks looks running is the verdict; fewer are not", () => {
    const memory = newWatchMemory();
    const stalled = parseProcList(STALLED_LISTING);
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "fine" });
    const verdict = decideLook(memory, stalled, TIMINGS);
    assert.equal(verdict.kind, "stalled");
    assert.match(
      verdict.kind === "stalled" ? verdict.reason : "",
      /codex \(pid 73\) has not reaped its exited child 130 for 10 s/,
    );
  });

  test("a zombie reaped in between is forgotten: a later one starts its count anew", () => {
    const memory = newWatchMemory();
    const stalled = parseProcList(STALLED_LISTING);
    decideLook(memory, stalled, TIMINGS);
    decideLook(memory, stalled, TIMINGS);
    const reaped = stalled.filter((p) => p.pid !== 130);
    assert.deepEqual(decideLook(memory, reaped, TIMINGS), { kind: "fine" });
    assert.equal(memory.seen.size, 0);
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "fine" }, "the same pid again is a new sighting");
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "fine" });
    assert.equal(decideLook(memory, stalled, TIMINGS).kind, "stalled");
  });

  test("a sandbox that does not answer the listing three times running is stalled; fewer are forgiven", () => {
    const memory = newWatchMemory();
    assert.deepEqual(decideLook(memory, null, TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, null, TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, [], TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, null, TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, null, TIMINGS), { kind: "fine" });
    const verdict = decideLook(memory, null, TIMINGS);
    assert.equal(verdict.kind, "stalled");
    assert.match(
      verdict.kind === "stalled" ? verdict.reason : "",
      /did not answer a process listing within 10000 ms, 3 times running/,
    );
  });

  test("the watch looks only while codex is quiet, declares the stall once, and stops with the turn", async () => {
    let now = 0;
    const looks: number[] = [];
    const stalls: string[] = [];
    const listing = parseProcList(STALLED_LISTING);
    const watch = new StallWatch({
      timings: { quietMs: 100, intervalMs: 5, stallLooks: 3, listTimeoutMs: 1000 },
      list: async () => {
        looks.push(now);
        return listing;
      },
      onStall: (reason) => void stalls.push(reason),
      now: () => now,
    }).start();
    // Busy codex: events keep coming, nothing is listed.
    for (let i = 0; i < 5; i++) {
      now += 50;
      watch.progress();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(looks.length, 0, "no listing while codex shows progress");
    now += 200;
    await waitFor(() => stalls.length === 1, { timeoutMs: 5000, what: "the verdict" });
    assert.equal(looks.length, 3, "three looks, then the verdict");
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(stalls.length, 1, "declared once");
    assert.equal(looks.length, 3, "no look after the verdict");
    watch.stop();
  });

  test("a listing that fails (the container died) is no evidence, however often", async () => {
    const stalls: string[] = [];
    let looks = 0;
    const watch = new StallWatch({
      timings: { quietMs: 0, intervalMs: 2, stallLooks: 3, listTimeoutMs: 1000 },
      list: async () => {
        looks += 1;
        throw new Error("container is not running");
      },
      onStall: (r) => void stalls.push(r),
    }).start();
    await waitFor(() => looks >= 10, { timeoutMs: 5000, what: "ten failed listings" });
    watch.stop();
    assert.deepEqual(stalls, []);
  });

  test("a listing that ignores its abort signal and never settles still counts as unanswered at listTimeoutMs", async () => {
    const stalls: string[] = [];
    const watch = new StallWatch({
      timings: { quietMs: 0, intervalMs: 2, stallLooks: 3, listTimeoutMs: 15 },
      list: () => new Promise<ProcEntry[]>(() => undefined),
      onStall: (r) => void stalls.push(r),
    }).start();
    await waitFor(() => stalls.length === 1, {
      timeoutMs: 5000,
      what: "the verdict despite a listing that never settles",
    });
    watch.stop();
    assert.match(stalls[0] ?? "", /did not answer a process listing within 15 ms, 3 times running/);
  });

  test("a listing that never answers is aborted at listTimeoutMs; a stopped watch gives no verdict", async () => {
    const aborted: unknown[] = [];
    const stalls: string[] = [];
    let started = 0;
    const hang = (signal: AbortSignal): Promise<ProcEntry[]> =>
      new Promise((_, reject) => {
        started += 1;
        signal.addEventListener("abort", () => {
          aborted.push(signal.reason);
          reject(signal.reason as Error);
        });
      });
    const watch = new StallWatch({
      timings: { quietMs: 0, intervalMs: 5, stallLooks: 3, listTimeoutMs: 20 },
      list: hang,
      onStall: (r) => void stalls.push(r),
    }).start();
    await waitFor(() => stalls.length === 1, {
      timeoutMs: 5000,
      what: "the verdict on a sandbox that does not answer",
    });
    assert.equal(aborted.length, 3);
    const stopped = new StallWatch({
      timings: { quietMs: 0, intervalMs: 5, stallLooks: 3, listTimeoutMs: 10_000 },
      list: hang,
      onStall: (r) => void stalls.push(r),
    }).start();
    await waitFor(() => started === 4, { timeoutMs: 5000, what: "the second watch to look" });
    stopped.stop();
    await waitFor(() => aborted.length === 4, { timeoutMs: 5000, what: "stop() to abort the listing in flight" });
    assert.equal(stalls.length, 1, "no verdict from a stopped watch");
    watch.stop();
  });
});
