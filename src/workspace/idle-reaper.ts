/** Stops workspace containers that ran no turn for idleTimeoutMs; their records stay, for the next ensure to start them. */
import type { Docker } from "../docker/engine.js";
import { isNotFound, isNotModified } from "../docker/engine.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceRegistry } from "./registry.js";

export interface IdleReaperOptions {
  docker: Docker;
  log: Logger;
  registry: WorkspaceRegistry;
  idleTimeoutMs: number;
  /** Drops a workspace whose container is gone. */
  forget(workspaceId: string): void;
}

/** Checks every half idle timeout (1 s to 1 min); null when idleTimeoutMs is 0 (never stop). Clear the timer to stop. */
export function startIdleReaper(options: IdleReaperOptions): NodeJS.Timeout | null {
  if (options.idleTimeoutMs <= 0) return null;
  const every = Math.max(1000, Math.min(60_000, Math.floor(options.idleTimeoutMs / 2)));
  const timer = setInterval(() => void stopIdle(options), every);
  timer.unref();
  return timer;
}

async function stopIdle(options: IdleReaperOptions): Promise<void> {
  const { docker, log, registry, idleTimeoutMs } = options;
  const now = Date.now();
  for (const record of registry.values()) {
    if (record.state !== "running" || record.activeTurnId !== null) continue;
    if (now - record.lastActiveAt < idleTimeoutMs) continue;
    log.info("stopping idle workspace container", { workspaceId: record.params.workspaceId, containerId: record.containerId });
    try {
      await docker.getContainer(record.containerId).stop({ t: 5 });
      record.state = "exited";
    } catch (error) {
      // Three answers, three outcomes: 304 (already stopped), 404 (gone), anything else (keep it, say so).
      if (isNotModified(error)) record.state = "exited";
      else if (isNotFound(error)) options.forget(record.params.workspaceId);
      else log.warn("could not stop idle workspace container", { workspaceId: record.params.workspaceId, error: errorMessage(error) });
    }
  }
}
