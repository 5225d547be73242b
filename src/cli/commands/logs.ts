/** alive-codex logs ID: the workspace container's log. */
import { CLIENT_OPTIONS, parseCommandArgs, parseNonNegativeInteger } from "../args.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { connectClient } from "./connect.js";

export const LOGS_USAGE = `Usage: alive-codex logs WORKSPACE [--tail N] [--socket PATH] [--json]

Prints the workspace container's log (what docker logs shows), the last N lines with --tail.`;

export async function logsCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommandArgs("logs", {
    args,
    options: { ...CLIENT_OPTIONS, tail: { type: "string" } },
    allowPositionals: true,
  });
  if (values.help) {
    writeLine(ctx.stdout, LOGS_USAGE);
    return ExitCode.ok;
  }
  const [workspaceId, extra] = positionals;
  if (workspaceId === undefined) throw new UsageError("logs needs a workspace id", "logs");
  if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`, "logs");
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
