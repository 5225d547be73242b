/**
 * Launching a turn's codex: its three files made in the workspace's TMPDIR (codex/turn-files.ts,
 * the prompt in `in`), the workspace's waiting launcher taken (codex/launcher.ts) and handed the
 * turn's header. The launcher execs codex with its stdio on the files, and its exec connection ends.
 */
import type { Logger } from "../log.js";
import { mcpTokenFor, type BrokeredEnv } from "./codex-thread.js";
import type { TrustBundle } from "../workspace/trust-bundle.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { buildCodexExecEnv } from "../codex/env.js";
import { encodeLaunchHeader, type LaunchTarget, type Launchers } from "../codex/launcher.js";
import {
  containerTurnFile,
  createTurnFiles,
  newTurnFileNames,
  removeTurnFiles,
  type TurnFileNames,
} from "../codex/turn-files.js";

export interface CodexLaunchOptions {
  launchers: Launchers;
  aliveMcpToken: string | null;
  brokered?: BrokeredEnv;
  /** The system roots and the sidecar's CA, for TLS clients in the workspace (workspace/trust-bundle.ts). */
  trustBundle?: TrustBundle;
}

/** Where a launched codex runs and writes: what a sidecar needs to adopt the turn. */
export interface TurnLaunch {
  execId: string;
  files: TurnFileNames;
}

export interface LaunchedCodex {
  launch: TurnLaunch;
  /** The read ends of codex's stdout and stderr files. */
  files: Awaited<ReturnType<typeof createTurnFiles>>;
  /** The launcher's exit: null once codex runs (the connection ended under it), a code if it failed first. */
  launcherExit: Promise<number | null>;
}

export function launchTarget(record: WorkspaceRecord): LaunchTarget {
  const { workspaceId, uid, gid, workspacePath } = record.params;
  return { workspaceId, containerId: record.containerId, user: `${uid}:${gid}`, workingDir: workspacePath };
}

/** Starts codex for the turn; on failure nothing of it is left (files closed and removed). */
export async function launchCodex(
  options: CodexLaunchOptions,
  record: WorkspaceRecord,
  turnId: string,
  modelCredential: string,
  argv: string[],
  prompt: Buffer,
  log: Logger,
): Promise<LaunchedCodex> {
  const names = newTurnFileNames(turnId);
  const { uid, gid } = record.params;
  const files = await createTurnFiles(record.paths.tmp, names, { uid, gid }, prompt);
  try {
    const aliveMcpToken = mcpTokenFor(options, record.params.workspaceId);
    const caBundle = options.trustBundle ? await options.trustBundle.installIn(record.paths.run) : null;
    const env = buildCodexExecEnv({ turnId, codexApiKey: modelCredential, aliveMcpToken, caBundle });
    const exec = await options.launchers.take(launchTarget(record));
    exec.stdin?.end(
      encodeLaunchHeader(env, argv, {
        stdin: containerTurnFile(names, "in"),
        stdout: containerTurnFile(names, "out"),
        stderr: containerTurnFile(names, "err"),
      }),
    );
    // The exec's own output: the launcher's complaint if it could not start codex (nothing once it has).
    const said: Buffer[] = [];
    exec.stderr.on("data", (chunk: Buffer) => said.length < 16 && said.push(chunk));
    exec.stdout.resume();
    const launcherExit = exec.exit.then((code) => {
      if (code !== null && code !== 0)
        log.warn("the launcher exited before codex ran", {
          code,
          output: Buffer.concat(said).toString("utf8").slice(0, 1024),
        });
      return code;
    });
    return { launch: { execId: exec.id, files: names }, files, launcherExit };
  } catch (error) {
    await Promise.all([files.out.close(), files.err.close()].map((p) => p.catch(() => undefined)));
    await removeTurnFiles(record.paths.tmp, names);
    throw error;
  }
}
