/**
 * The service the RPC server calls (service.ts's SidecarService), over the parts startSidecar
 * (sidecar.ts) wires: health, the workspaces, the turns, and what is brokered for a workspace (its
 * secret bindings and Alive API token, kept in the sidecar's memory, never in the workspace's params).
 */
import type { SidecarService, EnsureWorkspaceParams } from "../service.js";
import type { EngineStatus } from "../docker/engine-status.js";
import type { RuntimeCodex } from "../docker/runtime-codex.js";
import type { WorkspaceManager } from "../workspace/manager.js";
import type { WorkspaceDisks } from "../workspace/disk-image.js";
import type { Turns } from "../turns/turns.js";
import type { DescriptorGuard } from "../shared/descriptor-guard.js";
import type { WorkspaceEndpoints } from "../egress/workspace-endpoints.js";
import type { SecretBindings } from "../egress/secret-bindings.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { InternalDestination } from "../policy/internal-destinations.js";
import { checkBindingHosts } from "../policy/binding-host.js";

export interface SidecarServiceDeps {
  version: string;
  /** ALIVE_CODEX_IMAGE, for health when the engine cannot say. */
  imageRef: string | null;
  engineStatus: EngineStatus;
  codex: RuntimeCodex;
  workspaces: WorkspaceManager;
  turns: Turns;
  disks: WorkspaceDisks;
  descriptors: DescriptorGuard;
  network: WorkspaceEndpoints;
  secrets: SecretBindings;
  /** What a binding's host is checked against: a binding never widens the workspace's egress. */
  secretRules: { internal: readonly InternalDestination[]; ports: readonly number[]; defaultEgress: EgressPolicy };
}

export function sidecarService(deps: SidecarServiceDeps): SidecarService {
  const { engineStatus, codex, workspaces, turns, disks, descriptors, network, secrets } = deps;
  return {
    async health(signal) {
      const [dockerStatus, imageStatus, found] = await engineStatus.read(signal);
      const codexHealth = codex.health(found);
      return {
        version: deps.version,
        codexVersion: codexHealth.version ?? codexHealth.requested ?? codexHealth.sdk,
        codex: codexHealth,
        docker: dockerStatus,
        image: imageStatus ?? { ref: deps.imageRef ?? "", present: false },
        workspaces: workspaces.counts(),
        turns: { running: turns.running, detached: turns.detached },
        disk: disks.health(),
      };
    },
    async ensureWorkspace(request: EnsureWorkspaceParams, signal) {
      const { secrets: bindings, aliveApiToken, ...params } = request;
      // Checked before anything is made: a binding for a host the workspace may not reach is refused.
      if (bindings) checkBindingHosts(bindings, rulesFor(params.network === "none" ? "model" : params.egress));
      descriptors.assertRoom(network.heldConnections);
      const result = await workspaces.ensure(params, signal);
      if (bindings) secrets.setWorkspace(params.workspaceId, bindings);
      if (aliveApiToken !== undefined) network.setApiToken(params.workspaceId, aliveApiToken);
      turns.prewarm(params.workspaceId);
      return result;
    },
    listWorkspaces: async () => ({
      workspaces: workspaces.list().map((w) => {
        const bound = secrets.describe(w.workspaceId);
        return bound.length > 0 ? { ...w, secrets: bound } : w;
      }),
    }),
    removeWorkspace: async (params) => {
      turns.discardLauncher(params.workspaceId);
      // Its secret bindings and API token go with its sockets (WorkspaceEndpoints.close).
      return workspaces.remove(params.workspaceId, params.purgeHome ?? false);
    },
    workspaceLogs: async (params, signal) => ({ logs: await workspaces.logs(params.workspaceId, params.tail, signal) }),
    runTurn: async (params, hooks) => {
      descriptors.assertRoom(network.heldConnections);
      return turns.run(params, hooks);
    },
    cancelTurn: async (params) => ({ cancelled: await turns.cancel(params.turnId) }),
    attachTurn: (params, hooks) => turns.attach(params, hooks),
    getTurn: (params) => turns.get(params.turnId),
    listTurns: async (params) => ({ turns: turns.list(params) }),
  };

  function rulesFor(policy: EgressPolicy | undefined) {
    return { policy: policy ?? deps.secretRules.defaultEgress, ...deps.secretRules };
  }
}
