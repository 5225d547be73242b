/** Rate-limited log lines: a burst, then a steady rate, and one summary of what was held back. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createLogger } from "../../src/log.js";
import { LogLimiter, limitedLog } from "../../src/shared/log-limiter.js";

function capture(): { lines: Array<Record<string, unknown>>; log: ReturnType<typeof createLogger> } {
  const lines: Array<Record<string, unknown>> = [];
  return {
    lines,
    log: createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) }),
  };
}

describe("LogLimiter", () => {
  test("a burst of perMinute lines, then one a refill; the next line written says how many were held back", () => {
    let now = 0;
    const { lines, log } = capture();
    const limited = limitedLog(log, new LogLimiter({ perMinute: 3, now: () => now }), "ws-a");
    for (let i = 0; i < 10; i++) limited.warn("refused", "egress refused", { host: `h${i}.example` });
    assert.deepEqual(
      lines.map((l) => l.host),
      ["h0.example", "h1.example", "h2.example"],
    );
    now = 20_000; // a third of a minute: one line's worth
    limited.warn("refused", "egress refused", { host: "h10.example" });
    assert.deepEqual(
      lines.slice(3).map((l) => [l.level, l.msg, l.suppressed, l.host]),
      [
        ["warn", "egress refused: 7 more suppressed", 7, "h9.example"],
        ["warn", "egress refused", undefined, "h10.example"],
      ],
    );
    limited.warn("refused", "egress refused", { host: "h11.example" });
    assert.equal(lines.length, 5);
  });

  test("keys and kinds have their own buckets: one workspace's flood leaves another's lines alone", () => {
    const { lines, log } = capture();
    const limiter = new LogLimiter({ perMinute: 2, now: () => 0 });
    const a = limitedLog(log, limiter, "ws-a");
    const b = limitedLog(log, limiter, "ws-b");
    for (let i = 0; i < 100; i++) a.info("connect_failed", "egress connect failed");
    a.info("dns_failed", "egress lookup failed");
    b.info("connect_failed", "egress connect failed");
    assert.equal(lines.length, 4);
  });

  test("memory is bounded: the least recently used bucket goes first, with the summary it owes", () => {
    const { lines, log } = capture();
    const limiter = new LogLimiter({ perMinute: 1, maxBuckets: 2, now: () => 0 });
    limiter.write(log, "info", "ws-a", "k", "a line");
    limiter.write(log, "info", "ws-a", "k", "a line", { n: 2 });
    limiter.write(log, "info", "ws-b", "k", "b line");
    limiter.write(log, "info", "ws-c", "k", "c line");
    assert.equal(limiter.size, 2);
    assert.deepEqual(
      lines.map((l) => l.msg),
      ["a line", "b line", "a line: 1 more suppressed", "c line"],
    );
  });

  test("perMinute is checked", () => {
    assert.throws(() => new LogLimiter({ perMinute: 0 }), /perMinute: got 0/);
  });
});
