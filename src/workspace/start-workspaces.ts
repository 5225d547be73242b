/** Starting the workspaces at start-up, when the engine may not answer yet. */
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceManager } from "./manager.js";

/** Adopts existing containers; if the engine is down, keeps retrying in the background. Returns how to stop retrying. */
export async function startWorkspaces(workspaces: Pick<WorkspaceManager, "start">, log: Logger): Promise<() => void> {
  try {
    await workspaces.start();
    return () => undefined;
  } catch (error) {
    if (!(error instanceof SidecarError) || error.code !== ErrorCode.dockerUnreachable) throw error;
    log.error("Docker engine unreachable at start; workspace calls fail with -32001 until it answers", {
      error: errorMessage(error),
    });
    const retry = setInterval(() => {
      workspaces.start().then(
        () => {
          clearInterval(retry);
          log.info("Docker engine reachable again; workspace containers adopted");
        },
        () => undefined,
      );
    }, 5000);
    retry.unref();
    return () => clearInterval(retry);
  }
}
