/**
 * alive-codex doctor: proves this install works end to end and prints a table of checks, each with
 * its reason and fix when it fails. Against the sidecar that answers at the socket (--socket PATH,
 * or the configured socket when something answers there: src/doctor/check-running.ts), else with a
 * scratch sidecar of its own (src/doctor/run-doctor.ts). Exit 0 when every check passes, 1 when one
 * fails, 3 when nothing answers at an explicit --socket.
 * Takes the settings serve takes (flags, then the environment), so it checks the engine and image serve would use.
 */
import { loadConfig, renderSettingsHelp, type SidecarConfig } from "../../config.js";
import { createLogger } from "../../log.js";
import { SidecarClient, SidecarConnectionError } from "../../rpc/client.js";
import type { DoctorService } from "../../doctor/checks.js";
import type { DoctorCheck, DoctorReport } from "../../doctor/report.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { formatTable } from "../format.js";
import { parseServeArgs } from "./serve.js";

export const DOCTOR_USAGE = `Usage: alive-codex doctor [--socket PATH | --scratch] [--turn] [--json] [--setting value ...]

Proves the whole path on this install and prints one row per check, with its reason and fix when it
fails.

Which sidecar it checks:
  --socket PATH  the sidecar answering at PATH. Nothing there (no socket, nobody listening) fails at
                 once, naming the path, with exit code 3.
  (neither)      the sidecar at the configured socket (ALIVE_CODEX_SOCKET, else the default) when
                 something answers there; otherwise a scratch sidecar, as with --scratch.
  --scratch      a sidecar of its own, started in this process on a temporary state dir with your
                 settings (engine, image, limits; not your socket, state dir, key or metrics), talking
                 to a scripted model it serves on 127.0.0.1 (no key, no internet).

The checks, in order (a running sidecar: sidecar, engine, workspace, image, codex, disk, ...: its
image is read after the scratch workspace's ensure, which builds it on a fresh sidecar):
  engine      the Docker engine answers (for a running sidecar: to it, and to doctor, which probes
              the scratch container through it)
  image       the runtime image is present (a scratch sidecar builds it when --image is unset)
  sidecar     the scratch sidecar starts / the running one answers sidecar.health
  codex       the codex CLI in the image: version, where it comes from, tested or not, flags added
  workspace   a scratch workspace ensured through the sidecar (a running sidecar's under the first
              of ALIVE_CODEX_WORKSPACE_ROOTS, owned by the top of the uid/gid ranges)
  disk        the disk enforcement in force, and the scratch workspace's own disk when limited
  hardening   the container runs as non-root, CapDrop ALL, no-new-privileges, read-only root,
              network none, pids and memory limits
  isolation   the scratch workspace's measured isolation report
  turn        a real codex turn runs \`echo doctor-ok\` and the output comes back. Scratch: against
              the scripted model. Running sidecar: only with --turn, against the sidecar's own model
              (its key, real tokens; doctor cannot swap a running sidecar's model); without it the
              row says "not checked"
  cancel      turn.cancel during \`sleep 1000\` leaves no turn process in the container (as turn)
  egress      a raw CONNECT to 169.254.169.254:80 through the workspace's proxy gets 403
  cleanup     the scratch workspace (container, HOME, disk) is removed through the sidecar and
              nothing of it is left mounted or attached; doctor's own dirs are deleted
Exits 0 when every check passes (a "not checked" row is no failure), 1 when one fails, 3 when
nothing answers at --socket.

  --json     one JSON object: { ok, mode: "scratch" | "running", socketPath, stateDir,
             checks: [{ name, status, detail, fix?, durationMs }] }
  --turn     with a running sidecar, also run the turn and cancel checks (spends tokens)

The settings (flags or environment, as for serve; a scratch sidecar does not use --socket, --state-dir
or the metrics address):`;

const DOCTOR_FLAGS = ["--json", "--scratch", "--turn"];
/** Without --socket: how long the configured socket may take to accept before doctor starts its own sidecar instead. */
const PROBE_TIMEOUT_MS = 2000;
/** With --socket: the connection must be made within this (the check fails well inside 5 s). */
const CONNECT_TIMEOUT_MS = 3000;

export async function doctorCommand(args: string[], ctx: CliContext): Promise<number> {
  const json = args.includes("--json");
  const scratch = args.includes("--scratch");
  const turn = args.includes("--turn");
  const { help, flags } = parseServeArgs(
    args.filter((arg) => !DOCTOR_FLAGS.includes(arg)),
    "doctor",
  );
  if (help) {
    writeLine(ctx.stdout, `${DOCTOR_USAGE}\n${renderSettingsHelp()}`);
    return ExitCode.ok;
  }
  const explicitSocket = flags["--socket"] !== undefined;
  if (scratch && explicitSocket)
    throw new UsageError(
      "--scratch and --socket exclude each other: --scratch starts a sidecar of its own, --socket checks the one there",
      "doctor",
    );
  const config = loadConfig(flags);
  // The sidecar's own log lines would bury the table: only errors, unless asked for more.
  const level = flags["--log-level"] === undefined ? "error" : config.logLevel;
  const log = createLogger({ level, write: (line) => writeLine(ctx.stderr, line) });
  const onCheck = json
    ? undefined
    : (check: DoctorCheck): void => writeLine(ctx.stderr, `doctor: ${check.name} ${check.status}`);

  let report: DoctorReport;
  let code: number | null = null;
  const connection = scratch
    ? null
    : await connectTo(config.socketPath, explicitSocket ? CONNECT_TIMEOUT_MS : PROBE_TIMEOUT_MS);
  if (connection !== null && connection.client !== null) {
    const client = connection.client;
    if (!json) writeLine(ctx.stderr, `doctor: checking the sidecar at ${config.socketPath}`);
    try {
      const { runDoctorAgainst } = await import("../../doctor/check-running.js");
      report = await runDoctorAgainst({
        service: serviceOverSocket(client),
        socketPath: config.socketPath,
        config,
        turn,
        ...(onCheck ? { onCheck } : {}),
      });
    } finally {
      await client.close();
    }
  } else if (connection !== null && explicitSocket) {
    const { unreachableReport } = await import("../../doctor/check-running.js");
    report = unreachableReport(config.socketPath, connection.reason, connection.durationMs);
    for (const check of report.checks) onCheck?.(check);
    code = ExitCode.unreachable;
  } else {
    if (!json && connection !== null)
      writeLine(
        ctx.stderr,
        `doctor: nothing answers at ${config.socketPath} (${connection.reason}): checking this install with a scratch sidecar of its own`,
      );
    report = await runScratch(config, log, onCheck);
  }
  if (json) writeLine(ctx.stdout, JSON.stringify(report));
  else writeLine(ctx.stdout, formatDoctorReport(report));
  return code ?? (report.ok ? ExitCode.ok : ExitCode.failed);
}

async function runScratch(
  config: SidecarConfig,
  log: ReturnType<typeof createLogger>,
  onCheck: ((check: DoctorCheck) => void) | undefined,
): Promise<DoctorReport> {
  const { runDoctor } = await import("../../doctor/run-doctor.js");
  return runDoctor(config, { log, ...(onCheck ? { onCheck } : {}) });
}

/** A connected client, or why none could be made (and how long trying took). */
async function connectTo(
  socketPath: string,
  timeoutMs: number,
): Promise<
  { client: SidecarClient; reason: ""; durationMs: number } | { client: null; reason: string; durationMs: number }
> {
  const started = Date.now();
  try {
    return {
      client: await SidecarClient.connect(socketPath, { timeoutMs }),
      reason: "",
      durationMs: Date.now() - started,
    };
  } catch (error) {
    if (!(error instanceof SidecarConnectionError)) throw error;
    // "cannot reach the sidecar at PATH: no socket there" → "no socket there": the report names the path itself.
    const reason = error.message.startsWith(`cannot reach the sidecar at ${socketPath}: `)
      ? error.message.slice(`cannot reach the sidecar at ${socketPath}: `.length)
      : error.message;
    return { client: null, reason, durationMs: Date.now() - started };
  }
}

/** The running sidecar's methods doctor uses, over its socket: the same shapes the in-process service has. */
export function serviceOverSocket(client: SidecarClient): DoctorService {
  const withSignal = (signal: AbortSignal | undefined): { signal?: AbortSignal } => (signal ? { signal } : {});
  return {
    health: (signal) => client.health(withSignal(signal)),
    ensureWorkspace: (params, signal) => client.ensureWorkspace(params, withSignal(signal)),
    listWorkspaces: (signal) => client.listWorkspaces(withSignal(signal)),
    removeWorkspace: (params, signal) =>
      client.removeWorkspace(params.workspaceId, { purgeHome: params.purgeHome ?? false }, withSignal(signal)),
    cancelTurn: (params) => client.cancelTurn(params.turnId),
    async runTurn(params, hooks) {
      const run = client.runTurn(params, withSignal(hooks.signal));
      for await (const { seq, event } of run)
        hooks.onEvent(await run.turnId, seq, event as Parameters<typeof hooks.onEvent>[2]);
      return run.result;
    },
  };
}

/** The table `alive-codex doctor` prints: CHECK, RESULT, DETAIL, and the fix under a failed row. */
export function formatDoctorReport(report: DoctorReport): string {
  const rows = report.checks.map((c) => [
    c.name,
    c.status.toUpperCase(),
    `${c.detail}${c.fix === undefined ? "" : `\n  fix: ${c.fix}`}`,
  ]);
  const lines: string[][] = [];
  for (const [name = "", status = "", text = ""] of rows) {
    const [first = "", ...rest] = text.split("\n");
    lines.push([name, status, first]);
    for (const more of rest) lines.push(["", "", more]);
  }
  const failed = report.checks.filter((c) => c.status === "fail").length;
  const skippedChecks = report.checks.filter((c) => c.status === "skip").map((c) => c.name);
  const target = report.mode === "running" ? `the sidecar at ${report.socketPath}` : "a scratch sidecar";
  const notRun = skippedChecks.length === 0 ? "" : ` (not checked: ${skippedChecks.join(", ")})`;
  const summary = report.ok
    ? `doctor: every check passed against ${target}${notRun}`
    : `doctor: ${failed} check${failed === 1 ? "" : "s"} failed against ${target}`;
  const warned = report.checks.filter((c) => c.status === "warn").map((c) => c.name);
  const warnings =
    warned.length === 0
      ? ""
      : `\ndoctor: ${warned.length} warning${warned.length === 1 ? "" : "s"} to act on: ${warned.join(", ")}`;
  return `${formatTable(["CHECK", "RESULT", "DETAIL"], lines)}\n\n${summary}${warnings}`;
}
