/**
 * The idle life of a known workspace container: frozen when idle (the cgroup freezer: memory kept,
 * no CPU), stopped after a longer idle, brought back by an ensure. Thawing is the fast path: the
 * container's processes carry on where they were — the launcher waiting for the next turn, the
 * forwarders, the log pump — and their connections to the sidecar stay open throughout.
 */
import type { EnginePort } from "../docker/engine-port.js";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { ContainerState } from "../service.js";
import type { WorkspaceRecord } from "./record.js";

/** How long a stopping container's processes get between SIGTERM and SIGKILL. */
const STOP_GRACE_SECONDS = 5;

/** What the engine says of the container now ("paused" for a frozen one: the engine's Status says so too). */
export async function engineState(
  engine: Pick<EnginePort, "inspect">,
  containerId: string,
  signal?: AbortSignal,
): Promise<ContainerState> {
  const info = await engine.inspect(containerId, signal);
  if (info === null) {
    throw new SidecarError(ErrorCode.internal, `the workspace container ${containerId.slice(0, 12)} is gone`, {
      data: { reason: "the engine has no such container" },
    });
  }
  if (info.State.Paused) return "paused";
  return info.State.Status as ContainerState;
}

function markRunning(record: WorkspaceRecord): void {
  record.state = "running";
  record.pausedAt = null;
  record.lastActiveAt = Date.now();
}

/**
 * Makes a known container run: thaws a paused one, starts a stopped one. With `stale` (the event
 * stream was lost, so the record may be wrong) the engine is asked first; a thaw refused because the
 * container is not paused after all asks it too (the record was ahead of its events).
 */
export async function resumeWorkspace(
  engine: Pick<EnginePort, "inspect" | "start" | "unpause">,
  record: WorkspaceRecord,
  options: { stale: boolean; signal?: AbortSignal | undefined },
): Promise<void> {
  const { signal } = options;
  if (options.stale) record.state = await engineState(engine, record.containerId, signal);
  if (record.state === "paused") {
    try {
      await engine.unpause(record.containerId, signal);
      markRunning(record);
      return;
    } catch (error) {
      const now = await engineState(engine, record.containerId, signal);
      if (now === "paused") throw error;
      record.state = now;
    }
  }
  if (record.state !== "running") await engine.start(record.containerId, signal);
  markRunning(record);
}

export interface IdleTransitionOptions {
  engine: Pick<EnginePort, "inspect" | "pause" | "stop">;
  log: Logger;
  /** Drops a workspace whose container is gone. */
  forget(workspaceId: string): void;
}

/** Freezes an idle container. A 409 (not running, or paused already) sets the record from the engine; a 404 forgets it. */
export async function pauseIdleWorkspace(options: IdleTransitionOptions, record: WorkspaceRecord): Promise<void> {
  const { engine, log } = options;
  const { workspaceId } = record.params;
  log.info("pausing idle workspace container", { workspaceId, containerId: record.containerId });
  try {
    const answer = await engine.pause(record.containerId);
    if (answer === "paused") {
      record.state = "paused";
      record.pausedAt = Date.now();
    } else if (answer === "missing") options.forget(workspaceId);
    else await refreshState(options, record);
  } catch (error) {
    log.warn("could not pause idle workspace container", { workspaceId, error: errorMessage(error) });
  }
}

/** Stops a container paused for the second idle period (the engine thaws it to deliver the signals). */
export async function stopIdleWorkspace(
  options: IdleTransitionOptions,
  record: WorkspaceRecord,
  why = "idle",
  graceSeconds = STOP_GRACE_SECONDS,
): Promise<void> {
  const { engine, log } = options;
  const { workspaceId } = record.params;
  log.info(why === "idle" ? "stopping idle workspace container" : "stopping workspace container", {
    workspaceId,
    containerId: record.containerId,
    why,
  });
  try {
    // Three answers, three outcomes: stopped or already stopped (exited), gone (forgotten); a failure keeps it and says so.
    const answer = await engine.stop(record.containerId, graceSeconds);
    if (answer === "missing") options.forget(workspaceId);
    else {
      record.state = "exited";
      if (answer === "stopped") record.pausedAt = null;
    }
  } catch (error) {
    log.warn("could not stop idle workspace container", { workspaceId, error: errorMessage(error) });
  }
}

async function refreshState(options: IdleTransitionOptions, record: WorkspaceRecord): Promise<void> {
  try {
    const state = await engineState(options.engine, record.containerId);
    if (state === "paused" && record.state !== "paused") record.pausedAt = Date.now();
    record.state = state;
  } catch (error) {
    options.log.warn("could not inspect a workspace container", {
      workspaceId: record.params.workspaceId,
      error: errorMessage(error),
    });
  }
}
