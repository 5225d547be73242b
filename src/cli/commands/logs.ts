/** alive-codex logs --workspace ID: the workspace container's log. */
import { CLIENT_OPTIONS, parseCommandArgs, parseNonNegativeInteger } from "../args.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { connectClient } from "./connect.js";

export const LOGS_USAGE = `Usage: alive-codex logs --workspace ID [--tail N] [--socket PATH] [--json]

Prints the workspace container's log (what docker logs --timestamps shows: one timestamp per line,
the engine's), the last N lines with --tail. \`alive-codex logs ID\` works too.`;

export async function logsCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommandArgs("logs", {
    args,
    options: { ...CLIENT_OPTIONS, workspace: { type: "string" }, tail: { type: "string" } },
    allowPositionals: true,
  });
  if (values.help) {
    writeLine(ctx.stdout, LOGS_USAGE);
    return ExitCode.ok;
  }
  const workspaceId = chooseWorkspace(values.workspace, positionals);
  const tail = values.tail === undefined ? undefined : parseNonNegativeInteger("--tail", values.tail);
  const client = await connectClient(values.socket);
  try {
    const result = await client.workspaceLogs(workspaceId, tail);
    if (values.json) writeLine(ctx.stdout, JSON.stringify(result));
    else ctx.stdout.write(result.logs);
    return ExitCode.ok;
  } finally {
    await client.close();
  }
}

/** --workspace ID, as `run` takes it; the positional form of earlier releases still works, but not both at once. */
function chooseWorkspace(flag: string | undefined, positionals: string[]): string {
  const [positional, extra] = positionals;
  if (flag !== undefined && positional !== undefined) {
    throw new UsageError(
      `give the workspace once: --workspace ${JSON.stringify(flag)} and ${JSON.stringify(positional)} both name one`,
      "logs",
    );
  }
  if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`, "logs");
  const workspaceId = flag ?? positional;
  if (workspaceId === undefined || workspaceId === "") throw new UsageError("logs needs --workspace ID", "logs");
  return workspaceId;
}
