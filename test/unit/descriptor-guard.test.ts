/** The sidecar's own open files: reading the limit, and when new work is refused. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import {
  DescriptorGuard,
  countOpenDescriptors,
  raiseNofileLimit,
  readNofileLimit,
} from "../../src/shared/descriptor-guard.js";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

/** A guard over a counter the test moves, and a clock it moves. */
function guard(
  limit: number,
  recountMs = 1000,
): { guard: DescriptorGuard; set(open: number | null): void; advance(ms: number): void; counts: () => number } {
  let open: number | null = 0;
  let now = 0;
  let counts = 0;
  const g = new DescriptorGuard({
    limit,
    recountMs,
    count: () => {
      counts++;
      return open;
    },
    now: () => now,
  });
  return { guard: g, set: (value) => (open = value), advance: (ms) => (now += ms), counts: () => counts };
}

describe("the open-files limit", () => {
  test("is read off /proc/self/limits", () => {
    assert.deepEqual(readNofileLimit(LIMITS), { soft: 1024, hard: 524288 });
    assert.deepEqual(readNofileLimit(LIMITS.replace("1024   ", "unlimited")), { soft: Infinity, hard: 524288 });
    assert.equal(readNofileLimit("nothing here"), null);
    const own = readNofileLimit();
    assert.ok(own !== null && own.soft > 0 && own.soft <= own.hard, "this process's limit reads");
  });

  test("the open descriptors of this process are counted", () => {
    const open = countOpenDescriptors();
    assert.ok(open !== null && open >= 3, `counted ${open}`);
  });

  test("raising it never throws: nothing to raise, or nothing to read, is logged and returned as is", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
    assert.deepEqual(await raiseNofileLimit(log, () => ({ soft: 4096, hard: 4096 })), { soft: 4096, hard: 4096 });
    assert.match(lines.at(-1) ?? "", /open-files limit.*"soft":4096/);
    assert.equal(await raiseNofileLimit(log, () => null), null);
    assert.match(lines.at(-1) ?? "", /descriptor guard is off/);
  });
});

describe("DescriptorGuard", () => {
  test("refuses at 90 % of the limit, not below", () => {
    const t = guard(1000);
    t.set(899);
    assert.deepEqual(t.guard.check(), { overloaded: false, open: 899, limit: 1000 });
    t.advance(1000);
    t.set(900);
    assert.deepEqual(t.guard.check(), { overloaded: true, open: 900, limit: 1000 });
  });

  test("counts at most once per interval, and in between moves the count by what the caller holds since", () => {
    const t = guard(1000);
    t.set(500);
    assert.equal(t.guard.check(10).open, 500);
    // A burst of 400 connections within the second: no readdir, yet seen.
    t.set(999_999); // what a recount would say, were one made
    assert.deepEqual(t.guard.check(410), { overloaded: true, open: 900, limit: 1000 });
    assert.equal(t.guard.check(20).open, 510);
    assert.equal(t.counts(), 1);
    t.advance(999);
    t.guard.check(20);
    assert.equal(t.counts(), 1);
    t.advance(1);
    t.set(600);
    assert.equal(t.guard.check(20).open, 600);
    assert.equal(t.counts(), 2);
  });

  test("never refuses when the descriptors cannot be counted or there is no limit", () => {
    const t = guard(100);
    t.set(null);
    assert.equal(t.guard.check(10_000).overloaded, false);
    const unlimited = guard(Infinity);
    unlimited.set(1_000_000);
    assert.equal(unlimited.guard.check().overloaded, false);
  });

  test("assertRoom refuses a turn or an ensure with -32007 sidecar_overloaded, naming the count", () => {
    const t = guard(100);
    t.set(10);
    t.guard.assertRoom();
    t.advance(1000);
    t.set(95);
    assert.throws(
      () => t.guard.assertRoom(),
      (error: unknown) => {
        assert.ok(error instanceof SidecarError);
        assert.equal(error.code, ErrorCode.limitReached);
        assert.deepEqual(error.data, {
          reason: "the sidecar is near its open-files limit; retry shortly",
          code: "sidecar_overloaded",
          openFiles: 95,
          openFilesLimit: 100,
        });
        assert.match(error.message, /95 of its 100 open files/);
        return true;
      },
    );
  });
});
