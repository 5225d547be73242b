/** alive-codex health: the sidecar's view of itself, docker and the image. */
import { CLIENT_OPTIONS, parseCommandArgs } from "../args.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { formatPairs } from "../format.js";
import { describeCodexHealth } from "../../codex-versions.js";
import { describeDiskHealth } from "../../shared/disk-settings.js";
import { connectClient } from "./connect.js";

export const HEALTH_USAGE = `Usage: alive-codex health [--socket PATH] [--json]

Asks the sidecar for its version, codex's (as found in the runtime image, whether the sidecar's tests
ran against it, and the flags it adds), whether Docker answers, whether the runtime image is present,
how many workspaces and turns it has, and whether workspace disks are limited.`;

export async function healthCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommandArgs("health", { args, options: CLIENT_OPTIONS, allowPositionals: true });
  if (values.help) {
    writeLine(ctx.stdout, HEALTH_USAGE);
    return ExitCode.ok;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`, "health");
  const client = await connectClient(values.socket);
  try {
    const health = await client.health();
    if (values.json) {
      writeLine(ctx.stdout, JSON.stringify(health));
      return ExitCode.ok;
    }
    const docker = health.docker.reachable
      ? `reachable${health.docker.serverVersion ? ` (engine ${health.docker.serverVersion})` : ""}`
      : "UNREACHABLE";
    const rows: Array<[string, string]> = [
      ["sidecar", health.version],
      ["codex", health.codex ? describeCodexHealth(health.codex) : health.codexVersion],
      ["docker", docker],
      ["image", `${health.image.ref} (${health.image.present ? "present" : "missing"})`],
      ["workspaces", `${health.workspaces.running} running / ${health.workspaces.total} total`],
      ["turns", `${health.turns.running} running`],
    ];
    if (health.disk) rows.push(["disk", describeDiskHealth(health.disk)]);
    writeLine(ctx.stdout, formatPairs(rows));
    return ExitCode.ok;
  } finally {
    await client.close();
  }
}
