/** alive-codex ps: the workspaces, as a table like `docker ps`. */
import type { WorkspaceSummary } from "../../service.js";
import { CLIENT_OPTIONS, parseCommandArgs } from "../args.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { formatAge, formatTable } from "../format.js";
import { renderIsolationTable } from "../isolation-table.js";
import { connectClient } from "./connect.js";

export const PS_USAGE = `Usage: alive-codex ps [--socket PATH] [--json] [--isolation]

Lists the workspaces the sidecar knows: container, state, age, last activity and running turn.
With --isolation: what was measured of each container (runtime, user, capabilities, no_new_privs,
seccomp, read-only root, writable mounts, limits, egress, where the model key is, host reachability).`;

export const PS_HEADER = ["WORKSPACE", "USER", "CONTAINER", "STATE", "CREATED", "LAST ACTIVE", "TURN"] as const;

export function renderWorkspaceTable(workspaces: readonly WorkspaceSummary[], now: number): string {
  const rows = workspaces.map((w) => [
    w.workspaceId,
    w.userId,
    w.containerId === "" ? "-" : w.containerId.slice(0, 12),
    w.state,
    formatAge(w.createdAt, now),
    formatAge(w.lastActiveAt, now),
    w.activeTurnId ?? "-",
  ]);
  return formatTable(PS_HEADER, rows);
}

export async function psCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommandArgs("ps", {
    args,
    options: { ...CLIENT_OPTIONS, isolation: { type: "boolean" } },
    allowPositionals: true,
  });
  if (values.help) {
    writeLine(ctx.stdout, PS_USAGE);
    return ExitCode.ok;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`, "ps");
  const client = await connectClient(values.socket);
  try {
    const { workspaces } = await client.listWorkspaces();
    const table = values.isolation ? renderIsolationTable(workspaces) : renderWorkspaceTable(workspaces, Date.now());
    writeLine(ctx.stdout, values.json ? JSON.stringify({ workspaces }) : table);
    return ExitCode.ok;
  } finally {
    await client.close();
  }
}
