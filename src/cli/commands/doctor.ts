/**
 * alive-codex doctor: proves this install works end to end (src/doctor/run-doctor.ts) and prints a
 * table of checks, each with its reason and fix when it fails. Exit 0 when every check passes, 1 otherwise.
 * Takes the settings serve takes (flags, then the environment), so it checks the engine and image serve would use.
 */
import { loadConfig, renderSettingsHelp } from "../../config.js";
import { createLogger } from "../../log.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode } from "../cli-errors.js";
import { formatTable } from "../format.js";
import type { DoctorReport } from "../../doctor/report.js";
import { parseServeArgs } from "./serve.js";

export const DOCTOR_USAGE = `Usage: alive-codex doctor [--json] [--setting value ...]

Proves the whole path on this install: starts its own sidecar (in this process, on a temporary state
dir) with your settings (engine, image, limits), makes a scratch workspace, and checks in order:
  engine      the Docker engine answers
  image       the runtime image is present (or, with --image unset, builds it)
  sidecar     the sidecar starts
  workspace   the scratch workspace's container starts
  hardening   the container runs as non-root, CapDrop ALL, no-new-privileges, read-only root,
              network none, pids and memory limits
  turn        a real codex turn against a scripted model served on 127.0.0.1 for this check only
              (no key, no internet): it runs \`echo doctor-ok\` and the output comes back
  cancel      turn.cancel during \`sleep 1000\` leaves no turn process in the container
  egress      a raw CONNECT to 169.254.169.254:80 through the workspace's proxy gets 403
  cleanup     the scratch workspace, its container and HOME, and the temporary dirs are removed
Exits 0 when every check passes, 1 when one fails (each failure names its reason and fix).

  --json     one JSON object: { ok, stateDir, checks: [{ name, status, detail, fix?, durationMs }] }

The settings (flags or environment, as for serve; --socket, --state-dir and the metrics address are
not used: doctor's sidecar has its own):`;

export async function doctorCommand(args: string[], ctx: CliContext): Promise<number> {
  const json = args.includes("--json");
  const { help, flags } = parseServeArgs(args.filter((arg) => arg !== "--json"), "doctor");
  if (help) {
    writeLine(ctx.stdout, `${DOCTOR_USAGE}\n${renderSettingsHelp()}`);
    return ExitCode.ok;
  }
  const config = loadConfig(flags);
  // The sidecar's own log lines would bury the table: only errors, unless asked for more.
  const level = flags["--log-level"] === undefined ? "error" : config.logLevel;
  const log = createLogger({ level, write: (line) => writeLine(ctx.stderr, line) });
  const { runDoctor } = await import("../../doctor/run-doctor.js");
  const report = await runDoctor(config, {
    log,
    onCheck: json ? undefined : (check) => writeLine(ctx.stderr, `doctor: ${check.name} ${check.status}`),
  });
  if (json) writeLine(ctx.stdout, JSON.stringify(report));
  else writeLine(ctx.stdout, formatDoctorReport(report));
  return report.ok ? ExitCode.ok : ExitCode.failed;
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
