/** doctor's findings: one row per check, with the reason and the fix when it fails. */
import { formatTable } from "../cli/format.js";

export type CheckStatus = "pass" | "fail" | "skip";

export interface DoctorCheck {
  /** Short and stable (machine output keys on it): "engine", "image", "hardening"... */
  name: string;
  status: CheckStatus;
  /** What was seen: the evidence of a pass, the reason of a failure, why a check was skipped. */
  detail: string;
  /** What to do about a failure. */
  fix?: string;
  durationMs: number;
}

export interface DoctorReport {
  ok: boolean;
  /** The temporary state dir doctor's own sidecar used (removed afterwards); its containers carry it as a label. */
  stateDir: string;
  checks: DoctorCheck[];
}

/** A check that could not run because an earlier one failed. */
export function skipped(name: string, because: string): DoctorCheck {
  return { name, status: "skip", detail: `not run: ${because}`, durationMs: 0 };
}

/** The table `alive-codex doctor` prints: CHECK, RESULT, DETAIL, and the fix under a failed row. */
export function formatDoctorReport(report: DoctorReport): string {
  const rows = report.checks.map((c) => [c.name, c.status.toUpperCase(), `${c.detail}${c.fix === undefined ? "" : `\n  fix: ${c.fix}`}`]);
  const lines: string[][] = [];
  for (const [name = "", status = "", text = ""] of rows) {
    const [first = "", ...rest] = text.split("\n");
    lines.push([name, status, first]);
    for (const more of rest) lines.push(["", "", more]);
  }
  const failed = report.checks.filter((c) => c.status === "fail").length;
  const summary = report.ok ? "doctor: every check passed" : `doctor: ${failed} check${failed === 1 ? "" : "s"} failed`;
  return `${formatTable(["CHECK", "RESULT", "DETAIL"], lines)}\n\n${summary}`;
}
