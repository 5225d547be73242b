/**
 * alive-codex run: ensures a workspace, runs one turn in it and streams what codex does.
 * Ctrl-C cancels the turn (turn.cancel) and exits 130; a second Ctrl-C leaves at once.
 */
import path from "node:path";
import { parseDuration } from "../../config.js";
import { isAbortError } from "../../errors.js";
import type { TurnRunOptions } from "../../service.js";
import { CLIENT_OPTIONS, parseCommandArgs, parseNonNegativeInteger } from "../args.js";
import { writeLine, type CliContext } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { TurnPrinter } from "../turn-printer.js";
import { connectClient } from "./connect.js";

export const RUN_USAGE = `Usage: alive-codex run --workspace ID [options] "prompt"

Ensures the workspace's container, then runs one codex turn in it and streams its events.

Options:
  --workspace ID     workspace id (required)
  --thread ID        codex thread id (UUID) to continue; printed at the end of every run
  --uid N, --gid N   ids the workspace runs as (default: yours; the sidecar's default uid
                     range starts at 10000, so a login user's uid needs --uid)
  --user-id U        Alive user id (default: your user name)
  --path DIR         workspace directory on the host (default: the current directory)
  --model M          model for this turn
  --timeout D        turn deadline, e.g. 90s, 5m (default: the sidecar's)
  --socket PATH      the sidecar's socket
  --json             one JSON event per line, then the result
Ctrl-C cancels the turn and exits 130.`;

const RUN_OPTIONS = {
  ...CLIENT_OPTIONS,
  workspace: { type: "string" },
  thread: { type: "string" },
  uid: { type: "string" },
  gid: { type: "string" },
  "user-id": { type: "string" },
  path: { type: "string" },
  model: { type: "string" },
  timeout: { type: "string" },
} as const;

export async function runCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommandArgs("run", { args, options: RUN_OPTIONS, allowPositionals: true });
  if (values.help) {
    writeLine(ctx.stdout, RUN_USAGE);
    return ExitCode.ok;
  }
  const workspaceId = values.workspace;
  if (workspaceId === undefined) throw new UsageError("run needs --workspace ID", "run");
  const prompt = positionals.join(" ");
  if (prompt.trim() === "") throw new UsageError("run needs a prompt", "run");
  const uid = values.uid === undefined ? ctx.uid : parseNonNegativeInteger("--uid", values.uid);
  const gid = values.gid === undefined ? ctx.gid : parseNonNegativeInteger("--gid", values.gid);
  const options: TurnRunOptions = {};
  if (values.model !== undefined) options.model = values.model;
  if (values.timeout !== undefined) options.timeoutMs = parseDuration("--timeout", values.timeout);

  const client = await connectClient(values.socket);
  const controller = new AbortController();
  let interrupted = false;
  const onInterrupt = (): void => {
    if (interrupted) ctx.exit(ExitCode.interrupted);
    interrupted = true;
    writeLine(ctx.stderr, "alive-codex: cancelling the turn (Ctrl-C again to quit now)");
    controller.abort();
  };
  ctx.signals.on("SIGINT", onInterrupt);
  try {
    await client.ensureWorkspace(
      {
        workspaceId,
        userId: values["user-id"] ?? ctx.username,
        uid,
        gid,
        workspacePath: path.resolve(ctx.cwd, values.path ?? "."),
      },
      { signal: controller.signal },
    );
    const run = client.runTurn(
      {
        workspaceId,
        input: prompt,
        ...(values.thread === undefined ? {} : { threadId: values.thread }),
        ...(Object.keys(options).length === 0 ? {} : { options }),
      },
      { signal: controller.signal },
    );
    const printer = new TurnPrinter(ctx.stdout, { json: values.json ?? false });
    for await (const message of run) printer.event(message);
    const result = await run.result;
    printer.result(result);
    if (interrupted) return ExitCode.interrupted;
    if (result.status === "completed") return ExitCode.ok;
    const why = result.error === undefined ? "" : `: ${result.error.message}`;
    writeLine(ctx.stderr, `alive-codex: turn ${result.turnId} ${result.status}${why}`);
    return ExitCode.failed;
  } catch (error) {
    if (interrupted && isAbortError(error)) return ExitCode.interrupted;
    throw error;
  } finally {
    ctx.signals.off("SIGINT", onInterrupt);
    await client.close();
  }
}
