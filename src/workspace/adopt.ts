/** Adoption at start-up: the containers an earlier sidecar with this state dir left running, paused or stopped (a paused one keeps its state; its stop period starts now). */
import type { EnginePort } from "../docker/engine-port.js";
import { Labels } from "../docker/labels.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { Logger } from "../log.js";
import type { ContainerState, WorkspaceParams } from "../service.js";
import { workspacePaths } from "./paths.js";
import { buildWorkspaceRecord } from "./record.js";
import type { WorkspaceRegistry } from "./registry.js";
import { findUidConflict } from "./uid-holders.js";

export interface AdoptOptions {
  engine: Pick<EnginePort, "list">;
  log: Logger;
  stateDir: string;
  registry: WorkspaceRegistry;
  defaultEgress: EgressPolicy;
}

/** Our containers: labelled as managed, by a sidecar with this state dir (it holds their HOMEs). */
export function ownContainerLabels(stateDir: string): Record<string, string> {
  return { [Labels.managed]: "true", [Labels.stateDir]: stateDir };
}

/** Adopts containers with our labels; leaves everything else alone. */
export async function adoptWorkspaceContainers(options: AdoptOptions): Promise<void> {
  const { engine, log, stateDir, registry, defaultEgress } = options;
  const containers = await engine.list(ownContainerLabels(stateDir));
  for (const summary of containers) {
    const labels = summary.Labels;
    const params = parseParamsLabel(labels[Labels.params]);
    if (!params || registry.has(params.workspaceId)) {
      log.warn("ignoring a labelled container without usable workspace params", { containerId: summary.Id });
      continue;
    }
    registry.add(
      buildWorkspaceRecord({
        params,
        containerId: summary.Id,
        name: (summary.Names[0] ?? "").replace(/^\//, ""),
        specHash: labels[Labels.specHash] ?? "",
        state: toState(summary.State),
        createdAt: new Date(summary.Created * 1000).toISOString(),
        paths: workspacePaths(stateDir, params.workspaceId),
        defaultEgress,
        runtime: labels[Labels.runtime] ?? null,
      }),
    );
    log.info("adopted workspace container", {
      workspaceId: params.workspaceId,
      containerId: summary.Id,
      state: summary.State,
    });
    // Made by a sidecar that let users share a uid: adopted all the same (its processes run anyway),
    // and it holds its uid as any workspace does, so neither is ensured again until one is removed.
    const conflict = findUidConflict(
      params,
      [...registry.values()].map((record) => record.params),
    );
    if (conflict) {
      log.warn(
        "adopted a workspace whose uid another user's workspace also holds: ensures of either are refused (-32602, uid) until one is removed",
        { workspaceId: params.workspaceId, uid: params.uid, heldBy: conflict.workspaceId },
      );
    }
  }
}

function parseParamsLabel(raw: string | undefined): WorkspaceParams | null {
  if (raw === undefined) return null;
  try {
    const value = JSON.parse(raw) as Partial<WorkspaceParams>;
    if (
      typeof value.workspaceId !== "string" ||
      typeof value.uid !== "number" ||
      typeof value.gid !== "number" ||
      typeof value.workspacePath !== "string" ||
      typeof value.userId !== "string"
    )
      return null;
    return value as WorkspaceParams;
  } catch {
    return null;
  }
}

function toState(state: string): ContainerState {
  const known: ContainerState[] = ["created", "running", "paused", "restarting", "removing", "exited", "dead"];
  return (known as string[]).includes(state) ? (state as ContainerState) : "missing";
}
