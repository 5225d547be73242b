/** doctor's findings: one row per check, with the reason and the fix when it fails. */
/** "warn": it passed, but something the operator should know (it does not fail the run). */
export type CheckStatus = "pass" | "warn" | "fail" | "skip";

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
  /** "scratch": doctor started a sidecar of its own; "running": it checked the one answering at `socketPath`. */
  mode: "scratch" | "running";
  /** The socket of the sidecar checked ("running"); null for doctor's own. */
  socketPath: string | null;
  /** The temporary state dir doctor's own sidecar used (removed afterwards; its containers carry it as a label); null for a running sidecar. */
  stateDir: string | null;
  checks: DoctorCheck[];
}

/** A check that could not run because an earlier one failed. */
export function skipped(name: string, because: string): DoctorCheck {
  return { name, status: "skip", detail: `not run: ${because}`, durationMs: 0 };
}
