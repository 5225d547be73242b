/** A container's log as `docker logs --timestamps` shows it (no TTY: the engine's frames joined). */
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";
import { demuxFrames } from "./exec.js";

export async function readContainerLogs(
  docker: Docker,
  containerId: string,
  tail: number | undefined,
  signal?: AbortSignal,
): Promise<string> {
  const raw = await withDocker("read workspace logs", () =>
    docker.getContainer(containerId).logs({
      stdout: true,
      stderr: true,
      timestamps: true,
      follow: false,
      ...(tail === undefined ? {} : { tail }),
      ...(signal ? { abortSignal: signal } : {}),
    }),
  );
  return demuxFrames(raw as unknown as Buffer);
}
