/**
 * Pre-started codex launchers. Starting a process in a container (runc exec) costs ~40-50 ms, most
 * of a turn's overhead. So each workspace keeps one launcher exec started ahead of time: a copy
 * of bash (/opt/codex/bin/alive-launch) that waits on stdin for one turn's header — the env entries
 * codex gets, its argv, and the turn's three files (turn-files.ts), each NUL-terminated — exports
 * them and execs codex with its stdin, stdout and stderr on those files. Nothing of codex's goes
 * through the exec's connection (it ends as codex starts), so codex outlives the sidecar.
 *
 * The flags the sidecar adds for the codex version (codex-versions.ts: --ignore-user-config, ...)
 * are the launcher's own arguments: the script puts them right after `exec`, where codex's exec
 * options go, ahead of the SDK's argv, so no turn can do without them.
 */
import type { EnginePort, StartedExec } from "../docker/engine-port.js";

export const LAUNCHER_BINARY = "/opt/codex/bin/alive-launch";
/** What the launcher execs (found on PATH): codex's argv[0] and its process name in the container. */
export const CODEX_COMMAND = "codex";

export const LAUNCH_SCRIPT = `
IFS= read -r -d '' n || exit 70
for ((i = 0; i < n; i++)); do IFS= read -r -d '' kv || exit 70; export "$kv"; done
IFS= read -r -d '' n || exit 70
args=()
for ((i = 0; i < n; i++)); do IFS= read -r -d '' a || exit 70; args+=("$a"); done
IFS= read -r -d '' in || exit 70
IFS= read -r -d '' out || exit 70
IFS= read -r -d '' err || exit 70
unset kv a n i
if (($# > 0)) && [ "\${args[0]-}" = exec ]; then args=(exec "$@" "\${args[@]:1}"); fi
exec ${CODEX_COMMAND} "\${args[@]}" <"$in" >>"$out" 2>>"$err"
`;

/** Where codex's stdin, stdout and stderr go, as paths in the container (turn-files.ts). */
export interface LaunchFiles {
  stdin: string;
  stdout: string;
  stderr: string;
}

/** One turn's header: the env codex gets (buildCodexExecEnv), its argv and its files, NUL-terminated fields. */
export function encodeLaunchHeader(env: Record<string, string>, argv: string[], files: LaunchFiles): Buffer {
  const entries = Object.entries(env).map(([name, value]) => `${name}=${value}`);
  const fields = [
    String(entries.length),
    ...entries,
    String(argv.length),
    ...argv,
    files.stdin,
    files.stdout,
    files.stderr,
  ];
  for (const field of fields) if (field.includes("\0")) throw new Error("a launch field contains NUL");
  return Buffer.from(fields.map((f) => `${f}\0`).join(""), "utf8");
}

export interface LaunchTarget {
  workspaceId: string;
  containerId: string;
  user: string;
  workingDir: string;
}

interface Idle {
  containerId: string;
  exec: Promise<StartedExec>;
  dead: boolean;
  /** Aborts the start while it is in flight (a removed container may never answer it). */
  starting: AbortController;
}

export interface LaunchersOptions {
  /** Flags added after `exec` to every codex the launchers start (RuntimeCodex.flags). */
  codexFlags?: readonly string[];
}

/** The launcher's command line: the script, its name ($0), then the flags it adds to codex exec ($@). */
export function launcherCommand(codexFlags: readonly string[] = []): string[] {
  for (const flag of codexFlags)
    if (!/^--[a-z][a-z0-9-]*$/.test(flag)) throw new Error(`not a codex flag: ${JSON.stringify(flag)}`);
  return [LAUNCHER_BINARY, "-c", LAUNCH_SCRIPT, "alive-launch", ...codexFlags];
}

export class Launchers {
  private readonly idle = new Map<string, Idle>();
  private readonly cmd: string[];

  constructor(
    private readonly engine: Pick<EnginePort, "exec">,
    options: LaunchersOptions = {},
  ) {
    this.cmd = launcherCommand(options.codexFlags);
  }

  /** Starts a launcher for the workspace's next turn unless one is waiting. Never throws. */
  prewarm(target: LaunchTarget): void {
    const current = this.idle.get(target.workspaceId);
    if (current && !current.dead && current.containerId === target.containerId) return;
    if (current) this.discardEntry(current);
    const starting = new AbortController();
    const entry: Idle = {
      containerId: target.containerId,
      exec: this.start(target, starting.signal),
      dead: false,
      starting,
    };
    this.idle.set(target.workspaceId, entry);
    entry.exec.then(
      (exec) =>
        void exec.exit.then(() => {
          entry.dead = true;
          if (this.idle.get(target.workspaceId) === entry) this.idle.delete(target.workspaceId);
        }),
      () => {
        entry.dead = true;
        if (this.idle.get(target.workspaceId) === entry) this.idle.delete(target.workspaceId);
      },
    );
  }

  /** A waiting launcher for this container, or a new one. */
  async take(target: LaunchTarget): Promise<StartedExec> {
    const entry = this.idle.get(target.workspaceId);
    this.idle.delete(target.workspaceId);
    if (entry && !entry.dead && entry.containerId === target.containerId) {
      const exec = await entry.exec.catch(() => null);
      if (exec && !entry.dead && !exec.stdout.readableEnded) return exec;
    }
    return this.start(target);
  }

  /** Drops the workspace's waiting launcher (its container is going away). */
  discard(workspaceId: string): void {
    const entry = this.idle.get(workspaceId);
    this.idle.delete(workspaceId);
    if (entry) this.discardEntry(entry);
  }

  /** Drops every waiting launcher: each exits as its connection closes. */
  close(): void {
    for (const entry of this.idle.values()) this.discardEntry(entry);
    this.idle.clear();
  }

  /** A start in flight is aborted; a started launcher's connection is closed, which closes its stdin. */
  private discardEntry(entry: Idle): void {
    entry.dead = true;
    entry.starting.abort();
    void entry.exec.then(
      (exec) => (exec.stdin as (NodeJS.WritableStream & { destroy?: () => void }) | null)?.destroy?.(),
      () => undefined,
    );
  }

  private start(target: LaunchTarget, signal?: AbortSignal): Promise<StartedExec> {
    return this.engine.exec(target.containerId, {
      cmd: this.cmd,
      user: target.user,
      workingDir: target.workingDir,
      stdin: "open",
      ...(signal ? { signal } : {}),
    });
  }
}
