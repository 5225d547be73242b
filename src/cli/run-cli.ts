/** alive-codex: the command table, top-level help and the mapping from errors to exit codes. */
import { ConfigError } from "../config.js";
import { SidecarConnectionError, SidecarRpcError } from "../rpc/client.js";
import { writeLine, type CliContext } from "./cli-context.js";
import { ExitCode, UsageError } from "./cli-errors.js";
import { doctorCommand } from "./commands/doctor.js";
import { healthCommand } from "./commands/health.js";
import { logsCommand } from "./commands/logs.js";
import { psCommand } from "./commands/ps.js";
import { rmCommand } from "./commands/rm.js";
import { runCommand } from "./commands/run.js";
import { serveCommand } from "./commands/serve.js";
import { readPackageVersion } from "../version.js";

type Command = (args: string[], ctx: CliContext) => Promise<number>;

const COMMANDS: ReadonlyMap<string, { run: Command; summary: string }> = new Map([
  ["serve", { run: serveCommand, summary: "run the sidecar (settings: alive-codex serve --help)" }],
  ["health", { run: healthCommand, summary: "show the sidecar's health" }],
  ["ps", { run: psCommand, summary: "list workspaces" }],
  ["run", { run: runCommand, summary: "run one codex turn in a workspace and stream it" }],
  ["logs", { run: logsCommand, summary: "show a workspace container's log" }],
  ["rm", { run: rmCommand, summary: "remove a workspace container" }],
  [
    "doctor",
    { run: doctorCommand, summary: "prove this install works: engine, image, hardening, a turn, cancel, egress" },
  ],
]);

export function renderUsage(): string {
  const width = Math.max(...[...COMMANDS.keys()].map((name) => name.length));
  const lines = [...COMMANDS].map(([name, { summary }]) => `  ${name.padEnd(width)}   ${summary}`);
  return [
    "Usage: alive-codex COMMAND [options]",
    "",
    "Runs OpenAI Codex sessions for Alive inside per-workspace Docker containers.",
    "",
    "Commands:",
    ...lines,
    "",
    "Client commands take --socket PATH and --json. alive-codex COMMAND --help for details.",
    "Exit codes: 0 ok, 1 failed (turn or request), 2 usage or settings, 3 sidecar unreachable, 130 interrupted.",
  ].join("\n");
}

export async function runCli(argv: string[], ctx: CliContext): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined) {
    writeLine(ctx.stderr, renderUsage());
    return ExitCode.usage;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    writeLine(ctx.stdout, renderUsage());
    return ExitCode.ok;
  }
  if (name === "--version" || name === "-v") {
    writeLine(ctx.stdout, readPackageVersion());
    return ExitCode.ok;
  }
  const command = COMMANDS.get(name);
  if (command === undefined) {
    writeLine(ctx.stderr, `alive-codex: unknown command ${JSON.stringify(name)} (alive-codex --help lists them)`);
    return ExitCode.usage;
  }
  try {
    return await command.run(args, ctx);
  } catch (error) {
    return reportFailure(error, ctx);
  }
}

/** One line on stderr, and the exit code that goes with the kind of failure. */
function reportFailure(error: unknown, ctx: CliContext): number {
  if (error instanceof UsageError) {
    const hint = error.command === undefined ? "alive-codex --help" : `alive-codex ${error.command} --help`;
    writeLine(ctx.stderr, `alive-codex: ${error.message} (see ${hint})`);
    return ExitCode.usage;
  }
  if (error instanceof ConfigError) {
    writeLine(ctx.stderr, `alive-codex: ${error.message}`);
    return ExitCode.usage;
  }
  if (error instanceof SidecarConnectionError) {
    writeLine(ctx.stderr, `alive-codex: ${error.message}`);
    return ExitCode.unreachable;
  }
  if (error instanceof SidecarRpcError) {
    const data = error.data;
    const detail =
      data?.field !== undefined && data.reason !== undefined && !error.message.includes(data.reason)
        ? ` (${data.field}: ${data.reason})`
        : "";
    writeLine(ctx.stderr, `alive-codex: ${error.message}${detail} [${error.code}]`);
    return ExitCode.failed;
  }
  writeLine(ctx.stderr, `alive-codex: ${error instanceof Error ? error.message : String(error)}`.split("\n")[0] ?? "");
  return ExitCode.failed;
}
