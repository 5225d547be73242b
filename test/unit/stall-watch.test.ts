/**
 * The stall watch's rules (src/codex/stall-watch.ts) over process listings as the sandbox gives them:
 * what counts as a child codex missed, when it gets a SIGCHLD, when the turn is declared stalled,
 * and the watch's timer (quiet turns only, stopped with the turn). The watch against a real gVisor
 * sandbox, with a stall injected, is test/integration/stall-watch.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_STALL_TIMINGS, StallWatch, decideLook, newWatchMemory, parseProcList, unreapedChildren, type ProcEntry } from "../../src/codex/stall-watch.js";
import { waitFor } from "../support/wait.js";

/** The listing of the stall seen under gVisor (bench/runsc-stall.ts, stage first-model-request), shortened. */
const STALLED_LISTING = [
  "1 0 S 0 docker-init | /sbin/docker-init -- /bin/sh -c (while :; do socat ...",
  "(while :; do socat TCP-LISTEN:3129,bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:/run/alive/net/model.sock 2>/dev/null; sleep 1; done) &",
  "6 2 S 0 cat | cat /run/alive/log ",
  "73 0 S 111 codex | codex exec --experimental-json --config features.plugins=false",
  "130 73 Z 15 bash | ",
  "131 0 R 0 sh | /bin/sh -c for p in /proc/[0-9]*; do read -r s < \"$p/stat\"",
].join("\n");

const proc = (pid: number, ppid: number, state: string, comm: string): ProcEntry => ({ pid, ppid, state, ticks: 0, comm });
const TIMINGS = { ...DEFAULT_STALL_TIMINGS, maxNudges: 2 };

describe("the stall watch", () => {
  test("parses the sandbox's listing, continuation lines of a multi-line cmdline skipped", () => {
    const procs = parseProcList(STALLED_LISTING);
    assert.deepEqual(procs.map((p) => `${p.pid}/${p.ppid}/${p.state}/${p.comm}`), ["1/0/S/docker-init", "6/2/S/cat", "73/0/S/codex", "130/73/Z/bash", "131/0/R/sh"]);
    assert.equal(procs.find((p) => p.pid === 73)?.ticks, 111);
  });

  test("a zombie child of codex (parent pid 0, named codex) is a missed exit; other zombies are not codex's business", () => {
    assert.deepEqual([...unreapedChildren(parseProcList(STALLED_LISTING))], [[73, [130]]]);
    // A zombie of a tenant's process, of a codex not exec'd from outside, a live child of codex: none.
    assert.equal(unreapedChildren([proc(9, 0, "S", "codex"), proc(10, 9, "S", "bash"), proc(11, 10, "Z", "sleep"), proc(20, 5, "S", "codex"), proc(21, 20, "Z", "bash")]).size, 0);
  });

  test("seen once it may be reaped a moment later; seen twice it gets a SIGCHLD; after maxNudges the turn is stalled", () => {
    const memory = newWatchMemory();
    const stalled = parseProcList(STALLED_LISTING);
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "nudge", codexPid: 73, zombies: [130], nudges: 1 });
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "nudge", codexPid: 73, zombies: [130], nudges: 2 });
    const verdict = decideLook(memory, stalled, TIMINGS);
    assert.equal(verdict.kind, "stalled");
    assert.match(verdict.kind === "stalled" ? verdict.reason : "", /codex \(pid 73\) has not reaped its exited child 130 after 2 SIGCHLDs/);
  });

  test("a zombie reaped after a SIGCHLD is forgotten: a later missed exit starts its count anew", () => {
    const memory = newWatchMemory();
    const stalled = parseProcList(STALLED_LISTING);
    decideLook(memory, stalled, TIMINGS);
    assert.equal(decideLook(memory, stalled, TIMINGS).kind, "nudge");
    const woken = stalled.filter((p) => p.pid !== 130);
    assert.deepEqual(decideLook(memory, woken, TIMINGS), { kind: "fine" });
    assert.deepEqual([memory.seen.size, memory.nudged.size], [0, 0]);
    assert.deepEqual(decideLook(memory, stalled, TIMINGS), { kind: "fine" }, "the same pid again is a new sighting");
  });

  test("a sandbox that does not answer the listing twice running is stalled; one miss is forgiven", () => {
    const memory = newWatchMemory();
    assert.deepEqual(decideLook(memory, null, TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, [], TIMINGS), { kind: "fine" });
    assert.deepEqual(decideLook(memory, null, TIMINGS), { kind: "fine" });
    const verdict = decideLook(memory, null, TIMINGS);
    assert.equal(verdict.kind, "stalled");
    assert.match(verdict.kind === "stalled" ? verdict.reason : "", /did not answer a process listing within 10000 ms, twice running/);
  });

  test("the watch looks only while codex is quiet, nudges, declares the stall once, and stops with the turn", async () => {
    let now = 0;
    const looks: number[] = [];
    const nudged: number[] = [];
    const stalls: string[] = [];
    const listing = parseProcList(STALLED_LISTING);
    const watch = new StallWatch({
      timings: { quietMs: 100, intervalMs: 5, maxNudges: 2, listTimeoutMs: 1000 },
      list: async () => {
        looks.push(now);
        return listing;
      },
      nudge: async (pid) => void nudged.push(pid),
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
    assert.deepEqual(nudged, [73, 73]);
    assert.equal(looks.length, 4, "seen, nudged, nudged, stalled");
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(stalls.length, 1, "declared once");
    watch.stop();
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
    const watch = new StallWatch({ timings: { quietMs: 0, intervalMs: 5, maxNudges: 3, listTimeoutMs: 20 }, list: hang, nudge: async () => undefined, onStall: (r) => void stalls.push(r) }).start();
    await waitFor(() => stalls.length === 1, { timeoutMs: 5000, what: "the verdict on a sandbox that does not answer" });
    assert.equal(aborted.length, 2);
    const stopped = new StallWatch({ timings: { quietMs: 0, intervalMs: 5, maxNudges: 3, listTimeoutMs: 10_000 }, list: hang, nudge: async () => undefined, onStall: (r) => void stalls.push(r) }).start();
    await waitFor(() => started === 3, { timeoutMs: 5000, what: "the second watch to look" });
    stopped.stop();
    await waitFor(() => aborted.length === 3, { timeoutMs: 5000, what: "stop() to abort the listing in flight" });
    assert.equal(stalls.length, 1, "no verdict from a stopped watch");
    watch.stop();
  });
});
