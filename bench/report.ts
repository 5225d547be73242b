/**
 * What a bench section hands back: its printed tables, its checks against the targets, and notes.
 * The summary table at the end of `npm run bench` is built from the checks.
 */
import { formatTable, ratio, summarize, type Summary, type TableRow } from "./stats.js";

/** One target: a measured figure, the target in words, and whether it was met. */
export interface Check {
  metric: string;
  /** The figure as printed, with its unit (e.g. "143.2 ms", "0.81x"). */
  measured: string;
  target: string;
  pass: boolean;
}

export interface SectionResult {
  title: string;
  /** Aligned tables (formatTable output), printed in order. */
  tables: string[];
  checks: Check[];
  /** Short lines printed under the tables: what was measured, caveats. */
  notes: string[];
}

export function verdict(pass: boolean): "PASS" | "MISS" {
  return pass ? "PASS" : "MISS";
}

export function ms(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(value < 10 ? 3 : 1)} ms` : "-";
}

export function times(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : "-";
}

/** A latency row: n, p50/p95/p99 and mean in ms, and p50 over the baseline's p50 when one is given. */
export function latencyRow(
  label: string,
  samples: readonly number[],
  baseline?: Summary,
  extra: TableRow = {},
): TableRow {
  const s = summarize(samples);
  return {
    case: label,
    n: s.n,
    "p50 ms": s.p50,
    "p95 ms": s.p95,
    "p99 ms": s.p99,
    "mean ms": s.mean,
    "vs baseline p50": baseline === undefined ? "-" : times(ratio(s.p50, baseline.p50)),
    ...extra,
  };
}

export const LATENCY_COLUMNS = [
  "case",
  "n",
  "p50 ms",
  "p95 ms",
  "p99 ms",
  "mean ms",
  "vs baseline p50",
  "target",
  "result",
] as const;

/** Renders a section for the terminal: title, tables, notes. */
export function renderSection(section: SectionResult): string {
  const rule = "=".repeat(Math.max(20, section.title.length + 4));
  const parts = [rule, `  ${section.title}`, rule, ...section.tables.flatMap((table) => [table, ""])];
  for (const note of section.notes) parts.push(`  * ${note}`);
  return parts.join("\n").trimEnd();
}

export function summaryTable(checks: readonly Check[]): string {
  return formatTable(
    checks.map((check) => ({
      metric: check.metric,
      measured: check.measured,
      target: check.target,
      result: verdict(check.pass),
    })),
    ["metric", "measured", "target", "result"],
  );
}

/** A section that could not run (e.g. an error): every target it owns is a MISS with the reason. */
export function failedSection(title: string, error: unknown, metrics: readonly string[]): SectionResult {
  const reason = error instanceof Error ? error.message : String(error);
  return {
    title,
    tables: [],
    checks: metrics.map((metric) => ({ metric, measured: "not measured", target: "-", pass: false })),
    notes: [`FAILED: ${reason}`],
  };
}
