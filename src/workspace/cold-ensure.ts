/**
 * The cold path of an ensure, for a workspace whose container is not running or not current: its
 * runtime and disk resolved first (a refusal makes nothing), then the container replaced when its
 * spec changed or its disk must grow, resumed when it is current, or made.
 */
import { ErrorCode, SidecarError } from "../errors.js";
import type { EnsureWorkspaceResult, WorkspaceParams } from "../service.js";
import { createWorkspaceContainer } from "./create-container.js";
import { prepareWorkspaceDirs } from "./host-dirs.js";
import { checkWorkspaceIsolation } from "./isolation-check.js";
import { resumeWorkspace } from "./lifecycle.js";
import type { WorkspaceManagerOptions } from "./manager-options.js";
import { workspacePaths } from "./paths.js";
import { buildWorkspaceRecord, paramsKey, type WorkspaceRecord } from "./record.js";
import type { WorkspaceRegistry } from "./registry.js";
import { buildWorkspaceSpec, type SpecContext } from "./spec.js";

/** What the cold path needs of the manager that runs it (as the workspace's one transition). */
export interface ColdEnsureContext extends Pick<
  WorkspaceManagerOptions,
  "engine" | "log" | "runtimes" | "disks" | "stateDir" | "maxWorkspaces" | "defaultEgress"
> {
  records: WorkspaceRegistry;
  /** False while the engine's event stream is lost: the records may be stale. */
  following(): boolean;
  /** The spec context for the resolved runtime (the image ensured). */
  contextFor(runtime: string, signal?: AbortSignal): Promise<SpecContext>;
  /** Drops a workspace's record (its container is gone or going). */
  forget(workspaceId: string): void;
  /** Serves the sockets the workspace's forwarders reach. */
  serveNetwork(record: WorkspaceRecord): Promise<void>;
}

export async function ensureCold(
  context: ColdEnsureContext,
  params: WorkspaceParams,
  signal?: AbortSignal,
): Promise<EnsureWorkspaceResult> {
  const { engine, log, records } = context;
  // First: a runtime the operator does not allow or the engine does not have makes nothing (-32006).
  const runtime = await context.runtimes.resolve(params.runtime, signal);
  // The disk first: a request past the operator's ceiling fails before anything is made or replaced.
  const disk = context.disks.resolve(params);
  const paths = workspacePaths(context.stateDir, params.workspaceId);
  const spec = buildWorkspaceSpec(params, paths, await context.contextFor(runtime, signal));
  let record = records.find(params.workspaceId);
  if (disk && (await context.disks.needsGrowth(params.workspaceId, disk))) {
    // A disk grows unmounted: the container holding it goes first (its spec changed with the size anyway).
    if (record) {
      if (record.activeTurnId !== null) {
        throw new SidecarError(
          ErrorCode.workspaceBusy,
          `workspace ${params.workspaceId} runs a turn; its disk can only grow when idle`,
          {
            data: {
              field: "resources.diskMb",
              reason: "a larger disk needs the container replaced, and a turn is running",
            },
          },
        );
      }
      await engine.remove(record.containerId);
      context.forget(params.workspaceId);
      record = undefined;
    }
    await context.disks.detach(params.workspaceId, { purge: false });
  }
  // Mounted before any container of the workspace runs: a stopped one restarted after a reboot, a replaced or a new one.
  if (disk) await context.disks.attach(params.workspaceId, disk);

  if (record && record.specHash !== spec.hash) {
    if (record.activeTurnId !== null) {
      throw new SidecarError(
        ErrorCode.workspaceBusy,
        `workspace ${params.workspaceId} runs a turn; its container can only be replaced when idle`,
        {
          data: {
            field: "workspaceId",
            reason: "the requested settings differ from the running container's and a turn is running",
          },
        },
      );
    }
    log.info("replacing workspace container made from an older spec", {
      workspaceId: params.workspaceId,
      containerId: record.containerId,
      runtime,
      previousRuntime: record.runtime,
    });
    await engine.remove(record.containerId);
    context.forget(params.workspaceId);
    record = undefined;
  }

  if (record) {
    // Paused: thawed (the fast path); stopped: started. Either way the same container and HOME.
    await resumeWorkspace(engine, record, { stale: !context.following(), signal });
    record.paramsKey = paramsKey(params);
    const isolation = await checkWorkspaceIsolation(context, record, spec, false, signal);
    return {
      workspaceId: params.workspaceId,
      containerId: record.containerId,
      containerName: record.name,
      created: false,
      state: "running",
      isolation,
    };
  }

  if (records.size >= context.maxWorkspaces) {
    throw new SidecarError(
      ErrorCode.limitReached,
      `the sidecar already has ${records.size} workspaces (limit ${context.maxWorkspaces})`,
      {
        data: {
          field: "workspaceId",
          reason: "workspace limit reached; remove idle workspaces or raise ALIVE_CODEX_MAX_WORKSPACES",
        },
      },
    );
  }
  await prepareWorkspaceDirs(paths, params.uid, params.gid);
  const { containerId, created } = await createWorkspaceContainer(engine, spec, signal);
  const fresh = buildWorkspaceRecord({
    params,
    containerId,
    name: spec.name,
    specHash: spec.hash,
    state: "running",
    paths,
    defaultEgress: context.defaultEgress,
    runtime,
  });
  records.add(fresh);
  let isolation;
  try {
    isolation = await checkWorkspaceIsolation(context, fresh, spec, created, signal);
    await context.serveNetwork(fresh);
  } catch (error) {
    context.forget(params.workspaceId);
    if (created) await engine.remove(containerId).catch(() => undefined);
    throw error;
  }
  log.info(created ? "workspace container created" : "workspace container adopted", {
    workspaceId: params.workspaceId,
    containerId,
  });
  return {
    workspaceId: params.workspaceId,
    containerId,
    containerName: spec.name,
    created,
    state: "running",
    isolation,
  };
}
