/** doctor's findings: one row per check, with the reason and the fix when it fails. */
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
