/**
 * Workspace containers: ensure (idempotent, single-flight), adopt at start-up, list, stop when
 * idle, remove. The manager conducts; each concept has its file: the records (registry.ts,
 * record.ts), adoption (adopt.ts), the engine's event stream (engine-events.ts), the idle reaper
 * (idle-reaper.ts), the host dirs (host-dirs.ts) and the network (network.ts). State is kept in
 * memory and refreshed from the engine's event stream, so a warm ensure costs no engine round trip.
 */
import type Docker from "dockerode";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { removeContainer, startContainer } from "../docker/containers.js";
import { withDocker } from "../docker/engine.js";
import { demuxFrames } from "../docker/exec.js";
import { ExecStreams } from "../docker/exec-streams.js";
import { Labels } from "../docker/labels.js";
import type { EnsureWorkspaceResult, WorkspaceParams, WorkspaceSummary } from "../service.js";
import { adoptWorkspaceContainers, ownContainersFilter } from "./adopt.js";
import { WorkspaceEvents } from "./engine-events.js";
import { prepareWorkspaceDirs, removeTenantTree } from "./host-dirs.js";
import { startIdleReaper } from "./idle-reaper.js";
import { workspacePaths, type WorkspacePaths } from "./paths.js";
import type { EgressPolicy } from "../egress/policy.js";
import type { WorkspaceNet } from "../egress/workspace-endpoints.js";
import { buildWorkspaceRecord, egressInForce, paramsKey, type WorkspaceRecord } from "./record.js";
import { WorkspaceRegistry } from "./registry.js";
import { buildWorkspaceSpec, containerName, type SpecContext } from "./spec.js";

export interface ImageProvider {
  /** Makes sure the runtime image exists (building it if needed) and returns its reference. */
  ensure(signal?: AbortSignal): Promise<{ ref: string }>;
}

/** The host side of each workspace's network (egress/workspace-endpoints.ts): served while the sidecar knows the workspace. */
export interface WorkspaceNetwork {
  ensure(net: WorkspaceNet): Promise<void>;
  close(workspaceId: string): Promise<void>;
  closeAll(): Promise<void>;
  refusals(workspaceId: string): number;
}

export interface WorkspaceManagerOptions {
  docker: Docker;
  log: Logger;
  image: ImageProvider;
  stateDir: string;
  maxWorkspaces: number;
  idleTimeoutMs: number;
  spec: Omit<SpecContext, "image">;
  /** The egress policy of a workspace that names none. */
  defaultEgress: EgressPolicy;
  network: WorkspaceNetwork;
  /** Told how long each ensure took: warm (the container was running) or cold (created, started or adopted). */
  onEnsured?: (kind: "cold" | "warm", seconds: number) => void;
}

export class WorkspaceManager {
  private readonly records: WorkspaceRegistry;
  private readonly events: WorkspaceEvents;
  private readonly ensuring = new Map<string, Promise<EnsureWorkspaceResult>>();
  private imageRef: string | null = null;
  private reaper: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: WorkspaceManagerOptions) {
    this.records = new WorkspaceRegistry(options.stateDir);
    this.events = new WorkspaceEvents({
      docker: options.docker,
      log: options.log,
      registry: this.records,
      filter: ownContainersFilter(options.stateDir),
      forget: (workspaceId) => this.forget(workspaceId),
      reconcile: () => this.reconcile(),
    });
  }

  /** Adopts our containers left by an earlier sidecar, follows engine events, starts the idle reaper. */
  async start(): Promise<void> {
    if (this.closed) return;
    await this.events.follow();
    await this.reconcile();
    const { docker, log, idleTimeoutMs } = this.options;
    this.reaper = startIdleReaper({ docker, log, registry: this.records, idleTimeoutMs, forget: (workspaceId) => this.forget(workspaceId) });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    this.events.close();
    for (const record of this.records.values()) record.sink.close();
    ExecStreams.of(this.options.docker).destroyAll();
    await this.options.network.closeAll();
  }

  get(workspaceId: string): WorkspaceRecord {
    return this.records.get(workspaceId);
  }

  paths(workspaceId: string): WorkspacePaths {
    return this.records.paths(workspaceId);
  }

  find(workspaceId: string): WorkspaceRecord | undefined {
    return this.records.find(workspaceId);
  }

  counts(): { running: number; total: number } {
    return this.records.counts();
  }

  /** -32003 if the workspace runs a turn. */
  assertIdle(workspaceId: string): void {
    this.records.assertIdle(workspaceId);
  }

  /** Marks a workspace busy with a turn; -32003 if it already runs one. */
  acquireTurn(workspaceId: string, turnId: string): WorkspaceRecord {
    return this.records.acquireTurn(workspaceId, turnId);
  }

  releaseTurn(workspaceId: string, turnId: string): void {
    this.records.releaseTurn(workspaceId, turnId);
  }

  list(): WorkspaceSummary[] {
    return this.records.list((workspaceId) => this.options.network.refusals(workspaceId));
  }

  /** Idempotent and single-flight per workspace: concurrent calls share one creation. */
  async ensure(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult> {
    const started = performance.now();
    const warm = this.warmResult(params);
    if (warm) {
      this.options.onEnsured?.("warm", (performance.now() - started) / 1000);
      return warm;
    }
    const inflight = this.ensuring.get(params.workspaceId);
    if (inflight) {
      await inflight.catch(() => undefined);
      return this.ensure(params, signal);
    }
    const attempt = this.ensureCold(params, signal).finally(() => this.ensuring.delete(params.workspaceId));
    void attempt.then(() => this.options.onEnsured?.("cold", (performance.now() - started) / 1000), () => undefined);
    this.ensuring.set(params.workspaceId, attempt);
    return attempt;
  }

  private warmResult(params: WorkspaceParams): EnsureWorkspaceResult | null {
    const record = this.records.find(params.workspaceId);
    if (!record || record.state !== "running" || this.imageRef === null || !this.events.following) return null;
    if (record.paramsKey !== paramsKey(params)) return null;
    record.lastActiveAt = Date.now();
    return { workspaceId: params.workspaceId, containerId: record.containerId, containerName: record.name, created: false, state: record.state };
  }

  private async ensureCold(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult> {
    const { docker, log } = this.options;
    if (this.imageRef === null) this.imageRef = (await this.options.image.ensure(signal)).ref;
    const paths = workspacePaths(this.options.stateDir, params.workspaceId);
    const spec = buildWorkspaceSpec(params, paths, { ...this.options.spec, image: this.imageRef });
    let record = this.records.find(params.workspaceId);

    if (record && record.specHash !== spec.hash) {
      if (record.activeTurnId !== null) {
        throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${params.workspaceId} runs a turn; its container can only be replaced when idle`, {
          data: { field: "workspaceId", reason: "the requested settings differ from the running container's and a turn is running" },
        });
      }
      log.info("replacing workspace container made from an older spec", { workspaceId: params.workspaceId, containerId: record.containerId });
      await removeContainer(docker, record.containerId);
      this.forget(params.workspaceId);
      record = undefined;
    }

    if (record) {
      if (record.state !== "running") await startContainer(docker, record.containerId, signal);
      record.state = "running";
      record.lastActiveAt = Date.now();
      record.paramsKey = paramsKey(params);
      return { workspaceId: params.workspaceId, containerId: record.containerId, containerName: record.name, created: false, state: "running" };
    }

    if (this.records.size >= this.options.maxWorkspaces) {
      throw new SidecarError(ErrorCode.limitReached, `the sidecar already has ${this.records.size} workspaces (limit ${this.options.maxWorkspaces})`, {
        data: { field: "workspaceId", reason: "workspace limit reached; remove idle workspaces or raise ALIVE_CODEX_MAX_WORKSPACES" },
      });
    }
    await prepareWorkspaceDirs(paths, params.uid, params.gid);

    let containerId: string;
    let created = true;
    const made = await withDocker(
      `create the container for workspace ${params.workspaceId}`,
      () => docker.createContainer({ ...spec.options, ...(signal ? { abortSignal: signal } : {}) }),
      { ignore: [409] },
    );
    if (made !== undefined) {
      containerId = made.id;
    } else {
      // Made by someone else meanwhile (another process, or a container we did not know): adopt only if it is ours and current.
      const info = await withDocker("inspect an existing workspace container", () => docker.getContainer(spec.name).inspect());
      if (info.Config.Labels?.[Labels.specHash] !== spec.hash) {
        throw new SidecarError(ErrorCode.internal, `a container named ${spec.name} already exists and was not made from this spec`, {
          data: { reason: `remove it (docker rm -f ${spec.name}) or call workspace.remove` },
        });
      }
      containerId = info.Id;
      created = false;
    }
    try {
      await startContainer(docker, containerId, signal);
    } catch (error) {
      if (created) await removeContainer(docker, containerId).catch(() => undefined);
      throw error;
    }
    const fresh = buildWorkspaceRecord({ params, containerId, name: spec.name, specHash: spec.hash, state: "running", paths, defaultEgress: this.options.defaultEgress });
    this.records.add(fresh);
    try {
      await this.serveNetwork(fresh);
    } catch (error) {
      this.forget(params.workspaceId);
      if (created) await removeContainer(docker, containerId).catch(() => undefined);
      throw error;
    }
    log.info(created ? "workspace container created" : "workspace container adopted", { workspaceId: params.workspaceId, containerId });
    return { workspaceId: params.workspaceId, containerId, containerName: spec.name, created, state: "running" };
  }

  /** Serves the sockets the workspace's forwarders reach: its only way out. */
  private serveNetwork(record: WorkspaceRecord): Promise<void> {
    const { workspaceId, uid, gid } = record.params;
    return this.options.network.ensure({ workspaceId, uid, gid, dir: record.paths.net, policy: () => egressInForce(record) });
  }

  async remove(workspaceId: string, purgeHome: boolean): Promise<{ removed: boolean }> {
    const record = this.records.find(workspaceId);
    if (record?.activeTurnId) {
      throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${workspaceId} is running turn ${record.activeTurnId}`, {
        data: { field: "workspaceId", reason: "cancel the running turn before removing the workspace" },
      });
    }
    await this.ensuring.get(workspaceId)?.catch(() => undefined);
    const target = record?.containerId ?? containerName(workspaceId);
    const gone = await withDocker(
      `remove the container of workspace ${workspaceId}`,
      async () => {
        await this.options.docker.getContainer(target).remove({ force: true, v: true });
        return true;
      },
      { ignore: [404] },
    );
    const removed = gone === true || record !== undefined;
    this.forget(workspaceId);
    if (purgeHome) await removeTenantTree(workspacePaths(this.options.stateDir, workspaceId).root);
    this.options.log.info("workspace removed", { workspaceId, purgeHome, removed });
    return { removed };
  }

  /** The container's log as `docker logs --timestamps` shows it. */
  async logs(workspaceId: string, tail: number | undefined, signal?: AbortSignal): Promise<string> {
    const record = this.get(workspaceId);
    const raw = await withDocker("read workspace logs", () =>
      this.options.docker.getContainer(record.containerId).logs({
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

  /** Adopts containers with our labels (and serves their networks); leaves everything else alone. */
  async reconcile(): Promise<void> {
    const { docker, log, stateDir, defaultEgress } = this.options;
    await adoptWorkspaceContainers({ docker, log, stateDir, registry: this.records, defaultEgress });
    for (const record of [...this.records.values()]) {
      await this.serveNetwork(record).catch((error: unknown) => {
        log.error("could not serve an adopted workspace's network; its turns cannot reach the model", { workspaceId: record.params.workspaceId, error: errorMessage(error) });
      });
    }
  }

  /** Drops the record; connections to processes of its container are closed (the engine may never close them). */
  private forget(workspaceId: string): void {
    const record = this.records.find(workspaceId);
    if (!record) return;
    record.sink.close();
    ExecStreams.of(this.options.docker).destroyContainer(record.containerId);
    this.records.delete(workspaceId);
    void this.options.network.close(workspaceId);
  }
}
