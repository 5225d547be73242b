/**
 * The idle reaper: a workspace that ran no turn for idleTimeoutMs is paused (frozen), and one paused
 * for stopTimeoutMs more is stopped. Records stay, for the next ensure to thaw or start them. Each
 * pause or stop runs as the workspace's one transition (the manager's single flight), so an ensure
 * or a turn arriving meanwhile waits for it and then brings the container back.
 */
import type { WorkspaceRecord } from "./record.js";
import type { WorkspaceRegistry } from "./registry.js";
import { canPause } from "./runtimes.js";

export interface IdleTimeouts {
  /** Pause a workspace idle this long; 0: never pause. */
  idleTimeoutMs: number;
  /** Stop a workspace paused this long; 0: never stop. */
  stopTimeoutMs: number;
}

export type IdleAction = "pause" | "stop";

export interface IdleReaperOptions extends IdleTimeouts {
  registry: WorkspaceRegistry;
  /** True while an ensure, pause or stop of the workspace is in flight: it is left alone this round. */
  busy(workspaceId: string): boolean;
  /** Runs the transition as the workspace's single flight. */
  apply(record: WorkspaceRecord, action: IdleAction): Promise<void>;
}

/** What the reaper does with a record at `now`: a workspace running a turn is never touched. */
export function idleAction(
  record: Pick<WorkspaceRecord, "state" | "activeTurnId" | "lastActiveAt" | "pausedAt" | "runtime">,
  now: number,
  timeouts: IdleTimeouts,
): IdleAction | null {
  if (record.activeTurnId !== null) return null;
  if (record.state === "running" && timeouts.idleTimeoutMs > 0 && now - record.lastActiveAt >= timeouts.idleTimeoutMs) {
    // A runtime that cannot be paused safely (gVisor) is stopped at the idle timeout instead, if stopping is on.
    if (canPause(record.runtime ?? null)) return "pause";
    return timeouts.stopTimeoutMs > 0 ? "stop" : null;
  }
  if (
    record.state === "paused" &&
    timeouts.stopTimeoutMs > 0 &&
    now - (record.pausedAt ?? now) >= timeouts.stopTimeoutMs
  )
    return "stop";
  return null;
}

/**
 * How often the reaper looks: half the shorter timeout, between 500 ms and 1 min (so a 1 s test
 * timeout acts within 1.5 s); null when neither timeout is set.
 */
export function reaperInterval(timeouts: IdleTimeouts): number | null {
  const set = [timeouts.idleTimeoutMs, timeouts.stopTimeoutMs].filter((ms) => ms > 0);
  if (set.length === 0) return null;
  return Math.max(500, Math.min(60_000, Math.floor(Math.min(...set) / 2)));
}

/** Starts the reaper; null when it has nothing to do. Clear the timer to stop it. */
export function startIdleReaper(options: IdleReaperOptions): NodeJS.Timeout | null {
  const every = reaperInterval(options);
  if (every === null) return null;
  let sweeping = false;
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    void reapIdle(options).finally(() => (sweeping = false));
  }, every);
  timer.unref();
  return timer;
}

/** One round: each workspace due a pause or a stop gets it, one after the other. */
export async function reapIdle(options: IdleReaperOptions): Promise<void> {
  for (const record of [...options.registry.values()]) {
    const { workspaceId } = record.params;
    if (options.registry.find(workspaceId) !== record || options.busy(workspaceId)) continue;
    // Decided and begun in one synchronous step: nothing can take the workspace in between.
    const action = idleAction(record, Date.now(), options);
    if (action !== null) await options.apply(record, action).catch(() => undefined);
  }
}
