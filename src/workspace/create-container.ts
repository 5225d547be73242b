/** Making a workspace's container from its spec: created and started, or adopted when it exists already and is ours. */
import type { EnginePort } from "../docker/engine-port.js";
import { Labels } from "../docker/labels.js";
import { ErrorCode, SidecarError } from "../errors.js";
import type { WorkspaceSpec } from "./spec.js";

/** Creates and starts the container; a container that fails to start is removed before the error is thrown. */
export async function createWorkspaceContainer(
  engine: Pick<EnginePort, "create" | "inspect" | "start" | "remove">,
  spec: WorkspaceSpec,
  signal?: AbortSignal,
): Promise<{ containerId: string; created: boolean }> {
  let containerId: string;
  let created = true;
  const made = await engine.create(spec.options, signal);
  if (made !== null) {
    containerId = made.id;
  } else {
    // Made by someone else meanwhile (another process, or a container we did not know): adopt only if it is ours and current.
    const info = await engine.inspect(spec.name);
    if (info === null) {
      throw new SidecarError(
        ErrorCode.internal,
        `a container named ${spec.name} existed when this one was created and was gone when inspected`,
        {
          data: { reason: "another process made and removed it meanwhile; ensure the workspace again" },
        },
      );
    }
    if (info.Config.Labels?.[Labels.specHash] !== spec.hash) {
      throw new SidecarError(
        ErrorCode.internal,
        `a container named ${spec.name} already exists and was not made from this spec`,
        {
          data: { reason: `remove it (docker rm -f ${spec.name}) or call workspace.remove` },
        },
      );
    }
    containerId = info.Id;
    created = false;
  }
  try {
    await engine.start(containerId, signal);
  } catch (error) {
    if (created) await engine.remove(containerId).catch(() => undefined);
    throw error;
  }
  return { containerId, created };
}
