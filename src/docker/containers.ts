/** Starting, thawing and removing a container, where "already started" and "already gone" are success. */
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";

export async function startContainer(docker: Docker, containerId: string, signal?: AbortSignal): Promise<void> {
  await withDocker(`start container ${containerId.slice(0, 12)}`, () => docker.getContainer(containerId).start(signal ? { abortSignal: signal } : {}), { ignore: [304] });
}

export async function removeContainer(docker: Docker, containerId: string): Promise<void> {
  await withDocker(`remove container ${containerId.slice(0, 12)}`, () => docker.getContainer(containerId).remove({ force: true, v: true }), { ignore: [404] });
}

/**
 * Thaws a paused container. Engine 20.10 answers 500 (not 409) to a container that is not paused,
 * so no status is declared as expected here: the caller inspects when this fails.
 */
export async function unpauseContainer(docker: Docker, containerId: string, signal?: AbortSignal): Promise<void> {
  await withDocker(`unpause container ${containerId.slice(0, 12)}`, () => docker.getContainer(containerId).unpause(signal ? { abortSignal: signal } : {}));
}
