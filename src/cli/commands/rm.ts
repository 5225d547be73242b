/** alive-codex rm ID: removes a workspace container (its HOME too with --purge). */
import { CLIENT_OPTIONS, parseCommandArgs } from "../args.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { connectClient } from "./connect.js";

export const RM_USAGE = `Usage: alive-codex rm WORKSPACE [--purge] [--socket PATH] [--json]

Removes the workspace's container. --purge also deletes its HOME and TMPDIR in the state dir.`;

export async function rmCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommandArgs("rm", {
    args,
    options: { ...CLIENT_OPTIONS, purge: { type: "boolean" } },
    allowPositionals: true,
  });
  if (values.help) {
    writeLine(ctx.stdout, RM_USAGE);
    return ExitCode.ok;
  }
  const [workspaceId, extra] = positionals;
  if (workspaceId === undefined) throw new UsageError("rm needs a workspace id", "rm");
  if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`, "rm");
  const client = await connectClient(values.socket);
  try {
    const result = await client.removeWorkspace(workspaceId, { purgeHome: values.purge ?? false });
    if (values.json) writeLine(ctx.stdout, JSON.stringify(result));
    else writeLine(ctx.stdout, result.removed ? `removed ${workspaceId}` : `${workspaceId}: nothing to remove`);
    return ExitCode.ok;
  } finally {
    await client.close();
  }
}
