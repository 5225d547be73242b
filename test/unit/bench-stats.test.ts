import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { formatTable, percentile, ratio, summarize, timeIt } from "../../bench/stats.js";

describe("percentile (nearest rank)", () => {
  const values = [15, 20, 35, 40, 50];

  it("returns the sample at rank ceil(p/100 * n)", () => {
    assert.equal(percentile(values, 5), 15);
    assert.equal(percentile(values, 30), 20);
    assert.equal(percentile(values, 40), 20);
    assert.equal(percentile(values, 50), 35);
    assert.equal(percentile(values, 100), 50);
  });

  it("gives the minimum for p = 0 and never interpolates", () => {
    assert.equal(percentile(values, 0), 15);
    assert.equal(percentile([1, 2], 50), 1);
    assert.equal(percentile([1, 2], 51), 2);
  });

  it("does not depend on input order and leaves the input alone", () => {
    const shuffled = [50, 15, 40, 20, 35];
    assert.equal(percentile(shuffled, 50), 35);
    assert.deepEqual(shuffled, [50, 15, 40, 20, 35]);
  });

  it("handles a single sample", () => {
    assert.equal(percentile([7], 0), 7);
    assert.equal(percentile([7], 99), 7);
  });

  it("rejects empty input, p out of range and non-finite values", () => {
    assert.throws(() => percentile([], 50), RangeError);
    assert.throws(() => percentile([1], -1), RangeError);
    assert.throws(() => percentile([1], 101), RangeError);
    assert.throws(() => percentile([1], NaN), RangeError);
    assert.throws(() => percentile([1, NaN], 50), RangeError);
  });

  it("picks p95/p99 from 100 samples exactly", () => {
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i);
    assert.equal(percentile(hundred, 95), 95);
    assert.equal(percentile(hundred, 99), 99);
  });
});

describe("summarize", () => {
  it("computes n, percentiles, mean, min and max", () => {
    assert.deepEqual(summarize([4, 1, 3, 2]), { n: 4, p50: 2, p95: 4, p99: 4, mean: 2.5, min: 1, max: 4 });
  });

  it("returns n = 0 and NaN for no samples", () => {
    const s = summarize([]);
    assert.equal(s.n, 0);
    for (const key of ["p50", "p95", "p99", "mean", "min", "max"] as const) assert.ok(Number.isNaN(s[key]), key);
  });
});

describe("ratio", () => {
  it("divides, and is NaN for a zero or non-finite divisor", () => {
    assert.equal(ratio(3, 2), 1.5);
    assert.ok(Number.isNaN(ratio(1, 0)));
    assert.ok(Number.isNaN(ratio(NaN, 1)));
  });
});

describe("formatTable", () => {
  it("aligns strings left and numbers right under a dashed rule", () => {
    const table = formatTable([
      { case: "host", p50: 412, ratio: 1 },
      { case: "sidecar (warm)", p50: 530.25, ratio: 1.2871 },
    ]);
    assert.equal(
      table,
      [
        "case              p50  ratio",
        "--------------  -----  -----",
        "host              412      1",
        "sidecar (warm)  530.3    1.3",
      ].join("\n"),
    );
  });

  it("uses the given columns in order, dashes missing and non-finite cells, honours decimals", () => {
    const table = formatTable(
      [
        { a: "x", b: 1.23456 },
        { a: "yy", c: NaN },
      ],
      ["c", "b", "a"],
      { decimals: 3 },
    );
    assert.equal(table, ["c      b  a", "-  -----  --", "-  1.235  x", "-      -  yy"].join("\n"));
  });

  it("prints only the header and rule for no rows", () => {
    assert.equal(formatTable([], ["name", "n"]), "name  n\n----  -");
  });
});

describe("timeIt", () => {
  it("runs warm-ups untimed and returns one non-negative sample per timed run", async () => {
    const seen: number[] = [];
    const samples = await timeIt((i) => seen.push(i), { warmup: 2, n: 3 });
    assert.deepEqual(seen, [-1, -2, 0, 1, 2]);
    assert.equal(samples.length, 3);
    assert.ok(samples.every((s) => s >= 0));
  });

  it("rejects a bad n", async () => {
    await assert.rejects(
      timeIt(() => undefined, { n: 0 }),
      RangeError,
    );
  });
});
