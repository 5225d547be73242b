/**
 * What a gVisor sandbox is doing, from the host: `runsc ps` (the sandbox's own process table) and
 * `runsc debug --stacks` (the Sentry's goroutine stacks: where each task of the sandbox waits).
 * Taken when a runsc turn stalls, so the log says where it stood (docs/runtimes.md, "The random stall").
 *
 * The engine starts runsc through containerd's runc shim, whose state root is
 * `<exec-root>/runtime-runc/moby` (Docker 20.10: /var/run/docker/runtime-runc/moby). A sidecar that
 * cannot run runsc itself (it runs in a container, or the engine is remote) says so instead.
 */
import { execa } from "execa";
import { errorMessage } from "../errors.js";
import type { EnginePort } from "./engine-port.js";
import { runCommand } from "./exec-output.js";

/** Where the engine's runsc keeps its state, tried in order. */
export const RUNSC_STATE_ROOTS = [
  "/var/run/docker/runtime-runc/moby",
  "/run/docker/runtime-runc/moby",
  "/var/run/docker/runtime-runsc/moby",
];
const RUNSC = "/usr/bin/runsc";
/** Each runsc call is bounded: a wedged sandbox must not wedge the diagnosis. */
const CALL_TIMEOUT_MS = 10_000;
/** The stacks of a sandbox with a few dozen tasks are tens of KiB; more is cut. */
const MAX_OUTPUT = 256 * 1024;

/**
 * The sandbox's processes as it sees them: "pid ppid state cpu-ticks comm | cmdline" from /proc.
 * State R with ticks that do not move is a task the Sentry never runs; S or D says where it waits.
 */
/**
 * The same without command lines, and so without a fork per process (dash's read and printf are
 * builtins): what the stall watch runs every few seconds, cheap even under gVisor's ptrace platform.
 */
export const PROC_STATES_SCRIPT = `for p in /proc/[0-9]*; do read -r s < "$p/stat" 2>/dev/null || continue; c=\${s#*(}; c=\${c%) *}; r=\${s##*) }; set -- $r; printf '%s %s %s %s %s | \\n' "\${p#/proc/}" "$2" "$1" "$(($12 + $13))" "$c"; done`;

export const PROC_LIST_SCRIPT = `for p in /proc/[0-9]*; do read -r s < "$p/stat" 2>/dev/null || continue; c=\${s#*(}; c=\${c%) *}; r=\${s##*) }; set -- $r; printf '%s %s %s %s %s | %s\\n' "\${p#/proc/}" "$2" "$1" "$(($12 + $13))" "$c" "$(tr '\\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-200)"; done`;

async function runsc(args: string[]): Promise<{ ok: boolean; text: string }> {
  try {
    const result = await execa(RUNSC, args, { timeout: CALL_TIMEOUT_MS, reject: false, all: true, stdin: "ignore" });
    const text = (result.all ?? "").slice(0, MAX_OUTPUT);
    return {
      ok: result.exitCode === 0,
      text: result.timedOut ? `${text}\n(runsc ${args.join(" ")} timed out after ${CALL_TIMEOUT_MS} ms)` : text,
    };
  } catch (error) {
    return { ok: false, text: errorMessage(error) };
  }
}

/** The state root holding this container's sandbox, or null when runsc knows it under none. */
export async function runscRootOf(containerId: string): Promise<string | null> {
  for (const root of RUNSC_STATE_ROOTS) {
    if ((await runsc(["--root", root, "state", containerId])).ok) return root;
  }
  return null;
}

export interface GvisorDiagnosticsOptions {
  /** A name to resolve to the container's full id when `container` is not one. */
  containerName?: string;
}

/**
 * The sandbox's process list and Sentry stacks as one text, for the log. Never throws: what could
 * not be had is said in the text.
 */
export async function gvisorDiagnostics(
  engine: Pick<EnginePort, "inspect" | "exec">,
  container: string,
  options: GvisorDiagnosticsOptions = {},
): Promise<string> {
  let id = container;
  try {
    const info = await engine.inspect(options.containerName ?? container);
    if (info === null) return `the container ${options.containerName ?? container} is gone`;
    id = info.Id;
  } catch (error) {
    return `the container ${options.containerName ?? container} could not be inspected: ${errorMessage(error)}`;
  }
  const root = await runscRootOf(id);
  if (root === null)
    return `runsc on this host knows no sandbox ${id.slice(0, 12)} under ${RUNSC_STATE_ROOTS.join(", ")} (the sidecar runs in a container, or the engine is elsewhere)`;
  const procs = await runCommand(engine, id, {
    cmd: ["/bin/sh", "-c", PROC_LIST_SCRIPT],
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  }).then(
    (result) => result.stdout.trim() || result.stderr.trim(),
    (error: unknown) => `an exec in the sandbox failed: ${errorMessage(error)}`,
  );
  const ps = await runsc(["--root", root, "ps", id]);
  const stacks = await runsc(["--root", root, "debug", "--stacks", id]);
  return `processes in the sandbox (pid ppid state cpu-ticks comm | cmdline):\n${procs}\n\nrunsc ps ${id.slice(0, 12)}:\n${ps.text.trim()}\n\nrunsc debug --stacks ${id.slice(0, 12)}:\n${stacks.text.trim()}\n`;
}
