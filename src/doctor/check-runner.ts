/** How doctor runs its checks and records each row: pass with evidence, fail with a fix, skip or warn. */
import { SidecarError, errorMessage } from "../errors.js";
import type { SidecarService } from "../service.js";
import { skipped, type DoctorCheck } from "./report.js";

/** What doctor needs of a sidecar: the service's methods a client also has. */
export type DoctorService = Pick<
  SidecarService,
  "health" | "ensureWorkspace" | "listWorkspaces" | "removeWorkspace" | "runTurn" | "cancelTurn"
>;

export class Checks {
  readonly list: DoctorCheck[] = [];
  constructor(private readonly onCheck: ((check: DoctorCheck) => void) | undefined) {}

  /** Runs one check; `run` returns the evidence of a pass or throws a CheckFailure (anything else is a failure too). */
  async run(name: string, fix: string, run: () => Promise<string>): Promise<boolean> {
    const started = Date.now();
    let check: DoctorCheck;
    try {
      check = { name, status: "pass", detail: await run(), durationMs: Date.now() - started };
    } catch (error) {
      if (error instanceof CheckSkipped) {
        check = { name, status: "skip", detail: error.message, durationMs: Date.now() - started };
      } else if (error instanceof CheckWarning) {
        check = { name, status: "warn", detail: error.message, fix: error.fix, durationMs: Date.now() - started };
      } else {
        const failure = error instanceof CheckFailure ? error : null;
        check = {
          name,
          status: "fail",
          detail: failure?.message ?? errorMessage(error),
          fix: failure?.fix ?? fix,
          durationMs: Date.now() - started,
        };
      }
    }
    this.add(check);
    return check.status === "pass";
  }

  add(check: DoctorCheck): void {
    this.list.push(check);
    this.onCheck?.(check);
  }

  skip(names: readonly string[], because: string): void {
    for (const name of names) this.add(skipped(name, because));
  }
}

/** A failed check's reason, and its fix when the default one of the check does not fit. */
export class CheckFailure extends Error {
  constructor(
    message: string,
    readonly fix?: string,
  ) {
    super(message);
  }
}

/** A check that found it could not, or should not, run: its row says why (status "skip"). */
export class CheckSkipped extends Error {}

/** A check that passed with something the operator should act on: its row says what, and the fix (status "warn"). */
export class CheckWarning extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** What the engine said, without the port's wording around it: the check's detail says what doctor was doing. */
export function engineReason(error: unknown): string {
  return errorMessage(error instanceof SidecarError && error.cause !== undefined ? error.cause : error);
}
