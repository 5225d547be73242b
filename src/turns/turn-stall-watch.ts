/**
 * A turn's stall watch (the rules are codex/stall-watch.ts's), when ALIVE_CODEX_STALL_WATCH covers
 * the workspace's runtime: it looks inside as the workspace's user and, on its verdict, logs the
 * sandbox's processes (and, under gVisor, the Sentry's stacks) once and ends the turn.
 */
import type { StallWatchSetting } from "../config.js";
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { PROC_LIST_SCRIPT, PROC_STATES_SCRIPT, gvisorDiagnostics } from "../docker/gvisor.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { isGvisorRuntime } from "../workspace/runtimes.js";
import { DEFAULT_STALL_TIMINGS, StallWatch, parseProcList, type StallWatchTimings } from "../codex/stall-watch.js";

/** The error code of a turn the stall watch ended. */
export const SANDBOX_STALLED = "sandbox_stalled";

export interface TurnStallWatchOptions {
  engine: EnginePort;
  /** Which turns the stall watch looks after (ALIVE_CODEX_STALL_WATCH). */
  stallWatch: StallWatchSetting;
  /** The watch's timings; tests shorten them. */
  stallTimings?: StallWatchTimings;
  /** Told of each stall the watch declared (the metrics). */
  onSandboxStall?: () => void;
}

/** Starts the turn's watch (null when its runtime is not watched); on a stall, `end` fails the turn with SANDBOX_STALLED. */
export function startStallWatch(
  options: TurnStallWatchOptions,
  record: WorkspaceRecord,
  log: Logger,
  end: (code: string, message: string) => void,
): StallWatch | null {
  const watched = options.stallWatch === "all" || (options.stallWatch === "gvisor" && isGvisorRuntime(record.runtime));
  if (!watched) return null;
  const { engine } = options;
  const user = `${record.params.uid}:${record.params.gid}`;
  const containerId = record.containerId;
  return new StallWatch({
    timings: options.stallTimings ?? DEFAULT_STALL_TIMINGS,
    list: async (signal) => {
      const result = await runCommand(engine, containerId, {
        cmd: ["/bin/sh", "-c", PROC_STATES_SCRIPT],
        user,
        signal,
      });
      if (signal.aborted) throw signal.reason;
      return parseProcList(result.stdout);
    },
    onLook: (look) => log.debug("stall watch looked", look),
    onStall: (reason) => {
      options.onSandboxStall?.();
      void (async () => {
        const diagnostics = isGvisorRuntime(record.runtime)
          ? await gvisorDiagnostics(engine, containerId)
          : await runCommand(engine, containerId, {
              cmd: ["/bin/sh", "-c", PROC_LIST_SCRIPT],
              user,
              signal: AbortSignal.timeout(10_000),
            }).then(
              (r) => r.stdout,
              (error: unknown) => errorMessage(error),
            );
        log.warn("the turn's sandbox stalled: ending the turn", { reason, runtime: record.runtime, diagnostics });
        end(
          SANDBOX_STALLED,
          `the workspace's sandbox stalled (${reason}); the turn was stopped and the container will be restarted (docs/runtimes.md)`,
        );
      })();
    },
  }).start();
}
