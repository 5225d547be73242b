/** Starting, thawing and removing a container, where "already started" and "already gone" are success. */
import { setTimeout as delay } from "node:timers/promises";
import type { Docker } from "./engine.js";
import { dockerStatus, withDocker } from "./engine.js";

export async function startContainer(docker: Docker, containerId: string, signal?: AbortSignal): Promise<void> {
  await withDocker(
    `start container ${containerId.slice(0, 12)}`,
    () => docker.getContainer(containerId).start(signal ? { abortSignal: signal } : {}),
    { ignore: [304] },
  );
}

/** How long a removal the engine refuses while the container's process is still exiting is retried. */
const REMOVE_DEADLINE_MS = 20_000;

/**
 * Force-removes a container (by id or name); false when there was none. Under gVisor (runsc) engine
 * 20.10 may refuse a force-remove of a container that just started or was just killed ("PID ... is
 * zombie and can not be killed", 409 or 500) until the sandbox has exited: the removal waits for the
 * container to stop running (docker wait) and is tried again, until a deadline.
 */
export async function removeContainer(docker: Docker, containerId: string): Promise<boolean> {
  const container = docker.getContainer(containerId);
  const what = `remove container ${containerId.slice(0, 12)}`;
  const deadline = Date.now() + REMOVE_DEADLINE_MS;
  for (;;) {
    try {
      await container.remove({ force: true, v: true });
      return true;
    } catch (error) {
      const status = dockerStatus(error);
      if (status === 404) return false;
      const remaining = deadline - Date.now();
      if ((status !== 409 && status !== 500) || remaining <= 0) return withDocker(what, () => Promise.reject(error));
      // Until the container stops running (or a short bound: the engine may not report it), then again.
      await container
        .wait({ condition: "not-running", abortSignal: AbortSignal.timeout(Math.min(remaining, 1000)) })
        .catch(() => undefined);
      // A backoff, should the engine already report it stopped while still refusing the removal.
      await delay(100);
    }
  }
}

/**
 * Thaws a paused container. Engine 20.10 answers 500 (not 409) to a container that is not paused,
 * so no status is declared as expected here: the caller inspects when this fails.
 */
export async function unpauseContainer(docker: Docker, containerId: string, signal?: AbortSignal): Promise<void> {
  await withDocker(`unpause container ${containerId.slice(0, 12)}`, () =>
    docker.getContainer(containerId).unpause(signal ? { abortSignal: signal } : {}),
  );
}
