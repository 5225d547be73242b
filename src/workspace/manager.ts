/**
 * Workspace containers: ensure (idempotent, single-flight), adopt at start-up, list, pause and then
 * stop when idle, remove. The manager conducts; each concept has its file: the records (registry.ts,
 * record.ts), adoption (adopt.ts), the engine's event stream (engine-events.ts), the idle reaper
 * (idle-reaper.ts) and the transitions it and an ensure make (lifecycle.ts), creation
 * (create-container.ts), the host dirs (host-dirs.ts) and the network (network.ts). State is kept
 * in memory and refreshed from the engine's event stream, so a warm ensure costs no engine round trip.
 */
import type { EnginePort } from "../docker/engine-port.js";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { EnsureWorkspaceResult, IsolationReport, WorkspaceConnections, WorkspaceParams, WorkspaceSummary } from "../service.js";
import { adoptWorkspaceContainers, ownContainerLabels } from "./adopt.js";
import { createWorkspaceContainer } from "./create-container.js";
import type { WorkspaceDisks } from "./disk-image.js";
import { WorkspaceEvents } from "./engine-events.js";
import { prepareWorkspaceDirs, removeTenantTree } from "./host-dirs.js";
import { startIdleReaper, type IdleAction } from "./idle-reaper.js";
import { pauseIdleWorkspace, resumeWorkspace, stopIdleWorkspace } from "./lifecycle.js";
import { workspacePaths, type WorkspacePaths } from "./paths.js";
import type { EgressPolicy } from "../egress/policy.js";
import type { WorkspaceNet } from "../egress/workspace-endpoints.js";
import { isolationDifferences } from "./isolation.js";
import { expectationFromSpec, measureIsolation } from "./isolation-probe.js";
import { buildWorkspaceRecord, egressInForce, isolationReport, paramsKey, type WorkspaceRecord } from "./record.js";
import type { WorkspaceSpec } from "./spec.js";
import { WorkspaceRegistry } from "./registry.js";
import type { WorkspaceRuntimes } from "./runtimes.js";
import { buildWorkspaceSpec, containerName, type SpecContext, type SpecSettings } from "./spec.js";
import { checkUidHolder, type UidHold } from "./uid-holders.js";

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
  /** Its connections through the proxies now, and those refused for a bound or cut. */
  connections(workspaceId: string): WorkspaceConnections;
}

export interface WorkspaceManagerOptions {
  engine: EnginePort;
  log: Logger;
  image: ImageProvider;
  stateDir: string;
  maxWorkspaces: number;
  /** Pause a workspace idle this long (0: never). */
  idleTimeoutMs: number;
  /** Stop a workspace paused this long (0: never). */
  stopTimeoutMs: number;
  spec: SpecSettings;
  /** Resolves and checks each workspace's OCI runtime (allowlist, engine); the resolved name goes into the spec. */
  runtimes: Pick<WorkspaceRuntimes, "resolve">;
  /** The egress policy of a workspace that names none. */
  defaultEgress: EgressPolicy;
  network: WorkspaceNetwork;
  /** Each workspace's disk (disk-image.ts): attached before its container runs, detached when it is removed. */
  disks: WorkspaceDisks;
  /** Told how long each ensure took: warm (the container was running) or cold (created, started or adopted). */
  onEnsured?: (kind: "cold" | "warm", seconds: number) => void;
}

export class WorkspaceManager {
  private readonly records: WorkspaceRegistry;
  private readonly events: WorkspaceEvents;
  /** Per workspace, the one transition in flight (an ensure, a pause or a stop): they never overlap. */
  private readonly pending = new Map<string, Promise<unknown>>();
  /** Per workspace, the params of a cold ensure in flight: its uid is held from the call on, before anything is made. */
  private readonly ensuring = new Map<string, WorkspaceParams>();
  private imageRef: string | null = null;
  private reaper: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: WorkspaceManagerOptions) {
    this.records = new WorkspaceRegistry(options.stateDir);
    this.events = new WorkspaceEvents({
      engine: options.engine,
      log: options.log,
      registry: this.records,
      labels: ownContainerLabels(options.stateDir),
      forget: (workspaceId) => this.forget(workspaceId),
      reconcile: () => this.reconcile(),
    });
  }

  /** Adopts our containers left by an earlier sidecar, follows engine events, starts the idle reaper. */
  async start(): Promise<void> {
    if (this.closed) return;
    await this.events.follow();
    await this.reconcile();
    const { idleTimeoutMs, stopTimeoutMs } = this.options;
    this.reaper = startIdleReaper({
      registry: this.records,
      idleTimeoutMs,
      stopTimeoutMs,
      busy: (workspaceId) => this.pending.has(workspaceId),
      apply: (record, action) => this.exclusive(record.params.workspaceId, () => this.applyIdle(record, action)),
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    this.events.close();
    for (const record of this.records.values()) record.sink.close();
    this.options.engine.closeAllExecs();
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
    const summaries = this.records.list((workspaceId) => this.options.network.refusals(workspaceId));
    const usages = this.options.disks.usages(summaries.map((s) => s.workspaceId));
    return summaries.map((summary) => ({
      ...summary,
      network: { ...summary.network, connections: this.options.network.connections(summary.workspaceId) },
      disk: usages.get(summary.workspaceId) ?? null,
    }));
  }

  /**
   * Idempotent and single-flight per workspace: concurrent calls share one creation, and an ensure
   * arriving while the idle reaper pauses or stops the container waits for that, then brings it back.
   * A uid another user's workspace holds is refused (-32602) before anything is made (uid-holders.ts).
   */
  async ensure(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult> {
    const started = performance.now();
    const inflight = this.pending.get(params.workspaceId);
    if (inflight) {
      await inflight.catch(() => undefined);
      return this.ensure(params, signal);
    }
    // Checked and, for a cold ensure, claimed with no await in between: a concurrent ensure sees the claim.
    checkUidHolder(params, this.uidHolds());
    const warm = this.warmResult(params);
    if (warm) {
      this.options.onEnsured?.("warm", (performance.now() - started) / 1000);
      return warm;
    }
    this.ensuring.set(params.workspaceId, params);
    const attempt = this.exclusive(params.workspaceId, () => this.ensureCold(params, signal).finally(() => this.ensuring.delete(params.workspaceId)));
    void attempt.then(() => this.options.onEnsured?.("cold", (performance.now() - started) / 1000), () => undefined);
    return attempt;
  }

  /**
   * For a turn that holds the workspace (acquireTurn): waits out a pause or stop begun before it
   * did, and brings the container back. Costs nothing when the container runs and nothing is in flight.
   */
  async ready(workspaceId: string, signal?: AbortSignal): Promise<void> {
    const record = this.get(workspaceId);
    if (!this.pending.has(workspaceId) && record.state === "running") return;
    await this.ensure(record.params, signal);
  }

  /**
   * Stops the workspace's container after its sandbox stalled (stall-watch.ts): a sandbox that lost
   * a wake-up is not trusted with the next turn. HOME, the workspace and the record stay; the next
   * ensure or turn starts the container again, which under gVisor is a fresh sandbox.
   */
  async recycle(workspaceId: string): Promise<void> {
    const record = this.find(workspaceId);
    if (!record || record.state !== "running") return;
    const transition = { engine: this.options.engine, log: this.options.log, forget: (id: string) => this.forget(id) };
    await this.exclusive(workspaceId, () => stopIdleWorkspace(transition, record, "its sandbox stalled during a turn", 1));
  }

  /**
   * The context a workspace asking for `runtime` (or none) gets its spec built with: the operator's
   * settings, the runtime image, and the runtime resolved as an ensure resolves it. Anything that
   * builds a spec outside an ensure (the bench, tests) takes it from here, so its hash is the one
   * an ensure would give.
   */
  async specContext(runtime: string | undefined, signal?: AbortSignal): Promise<SpecContext> {
    return this.contextFor(await this.options.runtimes.resolve(runtime, signal), signal);
  }

  private async contextFor(runtime: string, signal?: AbortSignal): Promise<SpecContext> {
    if (this.imageRef === null) this.imageRef = (await this.options.image.ensure(signal)).ref;
    return { ...this.options.spec, image: this.imageRef, runtime };
  }

  /** Who holds which uid: every workspace known (adopted ones included) and every cold ensure in flight. */
  private *uidHolds(): Iterable<UidHold> {
    for (const record of this.records.values()) yield record.params;
    yield* this.ensuring.values();
  }

  /** Runs `work` as the workspace's one transition; it is registered before `work` first yields. */
  private exclusive<T>(workspaceId: string, work: () => Promise<T>): Promise<T> {
    const attempt = work().finally(() => {
      if (this.pending.get(workspaceId) === attempt) this.pending.delete(workspaceId);
    });
    this.pending.set(workspaceId, attempt);
    return attempt;
  }

  private async applyIdle(record: WorkspaceRecord, action: IdleAction): Promise<void> {
    const transition = { engine: this.options.engine, log: this.options.log, forget: (workspaceId: string) => this.forget(workspaceId) };
    if (action === "pause") await pauseIdleWorkspace(transition, record);
    else await stopIdleWorkspace(transition, record);
  }

  private warmResult(params: WorkspaceParams): EnsureWorkspaceResult | null {
    const record = this.records.find(params.workspaceId);
    if (!record || record.state !== "running" || this.imageRef === null || !this.events.following) return null;
    if (record.paramsKey !== paramsKey(params)) return null;
    // An adopted container not measured yet takes the cold path once, which measures it.
    const isolation = isolationReport(record);
    if (isolation === null) return null;
    record.lastActiveAt = Date.now();
    return { workspaceId: params.workspaceId, containerId: record.containerId, containerName: record.name, created: false, state: record.state, isolation };
  }

  private async ensureCold(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult> {
    const { engine, log } = this.options;
    // First: a runtime the operator does not allow or the engine does not have makes nothing (-32006).
    const runtime = await this.options.runtimes.resolve(params.runtime, signal);
    // The disk first: a request past the operator's ceiling fails before anything is made or replaced.
    const disk = this.options.disks.resolve(params);
    const paths = workspacePaths(this.options.stateDir, params.workspaceId);
    const spec = buildWorkspaceSpec(params, paths, await this.contextFor(runtime, signal));
    let record = this.records.find(params.workspaceId);
    if (disk && (await this.options.disks.needsGrowth(params.workspaceId, disk))) {
      // A disk grows unmounted: the container holding it goes first (its spec changed with the size anyway).
      if (record) {
        if (record.activeTurnId !== null) {
          throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${params.workspaceId} runs a turn; its disk can only grow when idle`, {
            data: { field: "resources.diskMb", reason: "a larger disk needs the container replaced, and a turn is running" },
          });
        }
        await engine.remove(record.containerId);
        this.forget(params.workspaceId);
        record = undefined;
      }
      await this.options.disks.detach(params.workspaceId, { purge: false });
    }
    // Mounted before any container of the workspace runs: a stopped one restarted after a reboot, a replaced or a new one.
    if (disk) await this.options.disks.attach(params.workspaceId, disk);

    if (record && record.specHash !== spec.hash) {
      if (record.activeTurnId !== null) {
        throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${params.workspaceId} runs a turn; its container can only be replaced when idle`, {
          data: { field: "workspaceId", reason: "the requested settings differ from the running container's and a turn is running" },
        });
      }
      log.info("replacing workspace container made from an older spec", { workspaceId: params.workspaceId, containerId: record.containerId, runtime, previousRuntime: record.runtime });
      await engine.remove(record.containerId);
      this.forget(params.workspaceId);
      record = undefined;
    }

    if (record) {
      // Paused: thawed (the fast path); stopped: started. Either way the same container and HOME.
      await resumeWorkspace(engine, record, { stale: !this.events.following, signal });
      record.paramsKey = paramsKey(params);
      const isolation = await this.checkIsolation(record, spec, false, signal);
      return { workspaceId: params.workspaceId, containerId: record.containerId, containerName: record.name, created: false, state: "running", isolation };
    }

    if (this.records.size >= this.options.maxWorkspaces) {
      throw new SidecarError(ErrorCode.limitReached, `the sidecar already has ${this.records.size} workspaces (limit ${this.options.maxWorkspaces})`, {
        data: { field: "workspaceId", reason: "workspace limit reached; remove idle workspaces or raise ALIVE_CODEX_MAX_WORKSPACES" },
      });
    }
    await prepareWorkspaceDirs(paths, params.uid, params.gid);
    const { containerId, created } = await createWorkspaceContainer(engine, spec, signal);
    const fresh = buildWorkspaceRecord({ params, containerId, name: spec.name, specHash: spec.hash, state: "running", paths, defaultEgress: this.options.defaultEgress, runtime });
    this.records.add(fresh);
    let isolation;
    try {
      isolation = await this.checkIsolation(fresh, spec, created, signal);
      await this.serveNetwork(fresh);
    } catch (error) {
      this.forget(params.workspaceId);
      if (created) await engine.remove(containerId).catch(() => undefined);
      throw error;
    }
    log.info(created ? "workspace container created" : "workspace container adopted", { workspaceId: params.workspaceId, containerId });
    return { workspaceId: params.workspaceId, containerId, containerName: spec.name, created, state: "running", isolation };
  }

  /**
   * The container's isolation, measured once per container id (cached on the record) and compared
   * with what the spec asked for. A container that differs is refused (-32006, naming each
   * difference) and removed: it carries our labels and the spec's hash, yet does not hold what the
   * spec promises, so it must not run a tenant's code. A failed measurement removes a container
   * this ensure made (`created`); a known container is left for the next ensure to measure again.
   */
  private async checkIsolation(record: WorkspaceRecord, spec: WorkspaceSpec, created: boolean, signal?: AbortSignal): Promise<IsolationReport> {
    const cached = isolationReport(record);
    if (cached) return cached;
    const { engine, log } = this.options;
    const { workspaceId, uid, gid } = record.params;
    const measured = await measureIsolation(engine, record.containerId, `${uid}:${gid}`, signal).catch(async (error: unknown) => {
      if (created) {
        this.forget(workspaceId);
        await engine.remove(record.containerId).catch(() => undefined);
      }
      throw error;
    });
    const differences = isolationDifferences(measured, expectationFromSpec(spec.options));
    if (differences.length > 0) {
      log.error("workspace container refused: its measured isolation differs from its spec", { workspaceId, containerId: record.containerId, differences });
      this.forget(workspaceId);
      await engine.remove(record.containerId).catch(() => undefined);
      throw new SidecarError(ErrorCode.notAllowed, `workspace ${workspaceId} refused: its container's isolation differs from what was asked: ${differences.join("; ")}`, {
        data: { field: "isolation", reason: differences.join("; "), differences },
      });
    }
    record.isolation = measured;
    log.debug("workspace isolation measured", { workspaceId, containerId: record.containerId, ms: measured.measuredMs });
    return isolationReport(record) as IsolationReport;
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
    await this.pending.get(workspaceId)?.catch(() => undefined);
    const target = record?.containerId ?? containerName(workspaceId);
    const gone = await this.options.engine.remove(target);
    const removed = gone || record !== undefined;
    this.forget(workspaceId);
    await this.options.disks.detach(workspaceId, { purge: purgeHome });
    if (purgeHome) await removeTenantTree(workspacePaths(this.options.stateDir, workspaceId).root);
    this.options.log.info("workspace removed", { workspaceId, purgeHome, removed });
    return { removed };
  }

  /** The container's log as `docker logs --timestamps` shows it. */
  logs(workspaceId: string, tail: number | undefined, signal?: AbortSignal): Promise<string> {
    return this.options.engine.logs(this.get(workspaceId).containerId, { tail, signal });
  }

  /** Adopts containers with our labels (and serves their networks); leaves everything else alone. */
  async reconcile(): Promise<void> {
    const { engine, log, stateDir, defaultEgress } = this.options;
    await adoptWorkspaceContainers({ engine, log, stateDir, registry: this.records, defaultEgress });
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
    this.options.engine.closeExecs(record.containerId);
    this.records.delete(workspaceId);
    void this.options.network.close(workspaceId);
  }
}
