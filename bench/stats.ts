/**
 * Pure helpers for `npm run bench`: timing, percentiles, summaries and the plain-text table the
 * bench prints. No I/O except what `timeIt`'s function does.
 */
import { performance } from "node:perf_hooks";

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/**
 * Nearest-rank percentile: sort ascending, take the value at rank ⌈p/100 · n⌉ (1-based), with
 * p = 0 giving the minimum. Always one of the samples, never an interpolation.
 * Throws a RangeError for no values, a non-finite value, or p outside [0, 100].
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError("percentile: values must not be empty");
  if (!Number.isFinite(p) || p < 0 || p > 100) throw new RangeError(`percentile: p must be within [0, 100] (got ${p})`);
  if (values.some((v) => !Number.isFinite(v))) throw new RangeError("percentile: values must be finite numbers");
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

/** n, nearest-rank p50/p95/p99, mean, min, max. No samples: n = 0 and NaN everywhere else. */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { n: 0, p50: NaN, p95: NaN, p99: NaN, mean: NaN, min: NaN, max: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    mean: sorted.reduce((sum, v) => sum + v, 0) / sorted.length,
    min: sorted[0] as number,
    max: sorted[sorted.length - 1] as number,
  };
}

/** a / b, e.g. sidecar p50 over host p50. NaN when b is 0 or either is not finite. */
export function ratio(a: number, b: number): number {
  if (b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return NaN;
  return a / b;
}

export type TableRow = Record<string, string | number>;

export interface FormatTableOptions {
  /** Decimals for non-integer numbers. Default 1. */
  decimals?: number;
}

/**
 * An aligned plain-text table: a header row, a dashed rule, one line per row. Columns default to
 * the keys of all rows in first-seen order. Numbers are right-aligned (integers as is, others with
 * `decimals` places, NaN/±Infinity/missing as "-"), strings left-aligned. Columns are separated by
 * two spaces; trailing spaces are trimmed. Ends without a newline.
 */
export function formatTable(
  rows: readonly TableRow[],
  columns?: readonly string[],
  options: FormatTableOptions = {},
): string {
  const decimals = options.decimals ?? 1;
  const cols = columns ?? [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const cells = rows.map((row) => cols.map((col) => formatCell(row[col], decimals)));
  const rightAligned = cols.map((col) => rows.some((row) => typeof row[col] === "number"));
  const widths = cols.map((col, i) => Math.max(col.length, ...cells.map((line) => (line[i] as string).length)));
  const pad = (text: string, i: number): string =>
    rightAligned[i] ? text.padStart(widths[i] as number) : text.padEnd(widths[i] as number);
  const lines = [
    cols.map((col, i) => pad(col, i)).join("  "),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...cells.map((line) => line.map((cell, i) => pad(cell, i)).join("  ")),
  ];
  return lines.map((line) => line.trimEnd()).join("\n");
}

function formatCell(value: string | number | undefined, decimals: number): string {
  if (value === undefined) return "-";
  if (typeof value === "string") return value;
  if (!Number.isFinite(value)) return "-";
  return Number.isInteger(value) ? String(value) : value.toFixed(decimals);
}

export interface TimeItOptions {
  /** Untimed runs first. Default 1. */
  warmup?: number;
  /** Timed runs. Default 10. */
  n?: number;
}

/**
 * Runs `fn` `warmup` times untimed, then `n` times one after another, and returns each timed
 * run's duration in ms (performance.now()). `fn` receives the 0-based index of the timed run
 * (-1 … -warmup for warm-up runs). An error from `fn` propagates.
 */
export async function timeIt(fn: (iteration: number) => unknown, options: TimeItOptions = {}): Promise<number[]> {
  const { warmup = 1, n = 10 } = options;
  if (!Number.isInteger(warmup) || warmup < 0)
    throw new RangeError(`timeIt: warmup must be an integer >= 0 (got ${warmup})`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`timeIt: n must be an integer >= 1 (got ${n})`);
  for (let i = 1; i <= warmup; i++) await fn(-i);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await fn(i);
    samples.push(performance.now() - start);
  }
  return samples;
}
