/**
 * Which process in a workspace container is whose. The container's own processes are started by
 * scripts built elsewhere: the main script (workspace/spec.ts: the log pump, and the forwarder loops
 * of egress/container-net.ts it forks) and the launcher pre-started for the next turn (launcher.ts).
 * Their command lines are rebuilt here from the same builders, so a changed script changes what is
 * recognised with it, instead of leaving a copied regex to match nothing.
 *
 * Roles, by command line and parentage (pids as the container sees them):
 * - init: the engine's init, pid 1;
 * - main: the main script, the init's child;
 * - log-pump: the main script's `cat` of the log FIFO, or its wait between two;
 * - forwarder: a forwarder loop (a subshell of the main script: the same command line), the socat
 *   listener it runs or its wait before a restart. A connection socat forked is a child of the
 *   listener, not of the loop: it belongs to whoever connected, so it is foreign;
 * - launcher: the launcher exec'd from outside (parent pid 0), still waiting to exec codex;
 * - turn: codex exec'd from outside (the launcher once it has exec'd it) and its descendants;
 * - foreign: everything else. Orphans a turn left (reparented to the init: setsid'd or nohup'd
 *   jobs), other execs from outside (the sidecar's sweeps and probes) and a tenant's processes.
 * A zombie child of the main script or of a loop is its parent's until reaped; it has no command line.
 *
 * It is for looking (doctor, tests, the bench), not for killing: a tenant can copy any command line,
 * so the sweeps (sweep.ts) choose their victims by start time, parentage and the turn marker.
 *
 * The test that would notice a script changing without this module: test/unit/container-processes.test.ts.
 */
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { FORWARDER_RESTART_WAIT, forwardedPorts, forwarderCommand } from "../egress/container-net.js";
import { LOG_PUMP_COMMANDS, containerMainCommand } from "../workspace/spec.js";
import { CODEX_COMMAND, launcherCommand } from "./launcher.js";

export type ProcessRole = "init" | "main" | "log-pump" | "forwarder" | "launcher" | "turn" | "foreign";

/** Roles of processes that belong to no turn: the container's own and the launcher waiting for the next turn. */
export const OWN_ROLES: ReadonlySet<ProcessRole> = new Set(["init", "main", "log-pump", "forwarder", "launcher"]);

export interface ContainerProcess {
  pid: number;
  ppid: number;
  /** State from /proc/<pid>/stat: R, S, Z, ... */
  state: string;
  /** The process's name (/proc/<pid>/comm); a tenant can set it to anything. */
  comm: string;
  /** The command line, arguments joined by single spaces (newlines in them too); "" for a zombie. */
  args: string;
}

export interface ClassifiedProcess extends ContainerProcess {
  role: ProcessRole;
}

/**
 * Prints "self <its pid>", then a line per process: "proc <pid> <ppid> <state> <args>\t<comm>".
 * The args' NULs, newlines and tabs become spaces; the comm comes last, after the only tab, as a
 * tenant may put anything in it. The whole stat file is read (no fork), as sweep.ts does: a comm may
 * hold a newline. Arg 1: the proc root (default /proc).
 */
export const PROCESS_LISTING_SCRIPT = `
proc=\${1:-/proc}
echo "self $$"
for p in "$proc"/[0-9]*; do
  s= l=
  while IFS= read -r l || [ -n "$l" ]; do s="$s$l "; l=; done 2>/dev/null < "$p/stat"
  [ -n "$s" ] || continue
  comm=\${s#*(}; comm=\${comm%) *}
  set -- \${s##*) }
  c=$(tr '\\0\\n\\t' '   ' < "$p/cmdline" 2>/dev/null)
  printf 'proc %s %s %s %s\\t%s\\n' "\${p##*/}" "$2" "$1" "$c" "$comm"
done
`;

/** Lists the container's processes as the workspace user sees them, this listing's own left out. */
export function processListingCommand(): string[] {
  return ["/bin/sh", "-c", PROCESS_LISTING_SCRIPT, "alive-ps"];
}

/** The processes in the listing's output, without the listing's shell and its children. */
export function parseProcessListing(stdout: string): ContainerProcess[] {
  const self = Number(/^self (\d+)$/m.exec(stdout)?.[1] ?? NaN);
  const processes: ContainerProcess[] = [];
  for (const line of stdout.split("\n")) {
    const match = /^proc (\d+) (\d+) (\S+) ([^\t]*)\t(.*)$/.exec(line);
    if (match)
      processes.push({
        pid: Number(match[1]),
        ppid: Number(match[2]),
        state: match[3] as string,
        args: normalizeArgs(match[4] as string),
        comm: match[5] as string,
      });
  }
  const byPid = new Map(processes.map((p) => [p.pid, p]));
  return processes.filter((p) => !isOrDescendsFrom(p, self, byPid));
}

/** Lists and classifies the processes of a running container. */
export async function listContainerProcesses(
  engine: Pick<EnginePort, "exec">,
  containerId: string,
  options: { user?: string; signal?: AbortSignal } = {},
): Promise<ClassifiedProcess[]> {
  const listing = await runCommand(engine, containerId, { cmd: processListingCommand(), ...options });
  if (listing.exitCode !== 0)
    throw new Error(
      `listing the processes of container ${containerId} exited ${listing.exitCode}: ${listing.stderr.slice(0, 300)}`,
    );
  return classifyProcesses(parseProcessListing(listing.stdout));
}

/** Whether a process belongs to no turn: the container's own, or the launcher waiting for the next turn. */
export function isOwnProcess(p: ClassifiedProcess): boolean {
  return OWN_ROLES.has(p.role);
}

/** The role of each process of one listing (a role depends on the parents', so all are needed at once). */
export function classifyProcesses(processes: readonly ContainerProcess[]): ClassifiedProcess[] {
  const known = knownCommandLines();
  const byPid = new Map(processes.map((p) => [p.pid, p]));
  const roles = new Map<number, ProcessRole>();
  const roleOf = (p: ContainerProcess, depth = 0): ProcessRole => {
    const cached = roles.get(p.pid);
    if (cached !== undefined) return cached;
    const parent = byPid.get(p.ppid);
    // A chain of parents this long is no tree the container's scripts make (a listing read while pids were reused): foreign.
    const parentRole = parent === undefined || depth > 64 ? null : roleOf(parent, depth + 1);
    const role = roleFrom(p, parent, parentRole, known);
    roles.set(p.pid, role);
    return role;
  };
  return processes.map((p) => ({ ...p, role: roleOf(p) }));
}

interface KnownCommandLines {
  main: Set<string>;
  logPump: Set<string>;
  forwarders: Set<string>;
  forwarderWait: string;
  /** The launcher's command line without the codex flags it adds. */
  launcher: string;
}

function knownCommandLines(): KnownCommandLines {
  return {
    main: new Set([true, false].map((withApi) => joinArgs(containerMainCommand(withApi)))),
    logPump: new Set([joinArgs(LOG_PUMP_COMMANDS.copy), joinArgs(LOG_PUMP_COMMANDS.wait)]),
    forwarders: new Set(forwardedPorts(true).map(([port, socket]) => joinArgs(forwarderCommand(port, socket)))),
    forwarderWait: joinArgs(FORWARDER_RESTART_WAIT),
    launcher: joinArgs(launcherCommand()),
  };
}

function roleFrom(
  p: ContainerProcess,
  parent: ContainerProcess | undefined,
  parentRole: ProcessRole | null,
  known: KnownCommandLines,
): ProcessRole {
  if (p.pid === 1) return "init";
  const zombie = p.state.startsWith("Z") || p.args === "";
  if (parentRole === "init") return known.main.has(p.args) ? "main" : "foreign";
  const parentIsLoop = parentRole === "forwarder" && parent !== undefined && known.main.has(parent.args);
  if (parentRole === "main" || parentIsLoop) {
    // A subshell the main script forked to run a forwarder's loop shows the main script's command line.
    if (parent !== undefined && p.args === parent.args) return "forwarder";
    if (parentRole === "main") return zombie || known.logPump.has(p.args) ? "log-pump" : "foreign";
    return zombie || known.forwarders.has(p.args) || p.args === known.forwarderWait ? "forwarder" : "foreign";
  }
  if (parentRole === "turn") return "turn";
  if (parentRole === null && p.ppid === 0) {
    if (isLauncher(p.args, known.launcher)) return "launcher";
    if (p.comm === CODEX_COMMAND || p.args.split(" ")[0] === CODEX_COMMAND) return "turn";
  }
  return "foreign";
}

/** The launcher's command line, with whatever codex flags launcherCommand accepts after it. */
function isLauncher(args: string, bare: string): boolean {
  if (args === bare) return true;
  if (!args.startsWith(`${bare} `)) return false;
  try {
    return joinArgs(launcherCommand(args.slice(bare.length + 1).split(" "))) === args;
  } catch {
    return false;
  }
}

function isOrDescendsFrom(
  p: ContainerProcess,
  ancestor: number,
  byPid: ReadonlyMap<number, ContainerProcess>,
): boolean {
  let current: ContainerProcess | undefined = p;
  for (let hops = 0; current !== undefined && hops < 64; hops++) {
    if (current.pid === ancestor) return true;
    current = byPid.get(current.ppid);
  }
  return false;
}

/** A command line as the listing shows it: arguments joined by single spaces. */
function joinArgs(argv: readonly string[]): string {
  return normalizeArgs(argv.join(" "));
}

function normalizeArgs(args: string): string {
  return args.replace(/[\s\0]+/g, " ").trim();
}
