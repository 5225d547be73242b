/**
 * Workspace containers: ensure (idempotent, single-flight), adopt at start-up, list, pause and then
 * stop when idle, remove. The manager conducts; each concept has its file: the records (registry.ts,
 * record.ts), one transition at a time per workspace (transitions.ts), adoption (adopt.ts), the
 * engine's event stream (engine-events.ts), the idle reaper (idle-reaper.ts) and the transitions it
 * and an ensure make (lifecycle.ts), the cold path of an ensure (cold-ensure.ts: replace, resume or
 * make), creation (create-container.ts), the isolation check (isolation-check.ts) and the host dirs
 * (host-dirs.ts); what it is made with is manager-options.ts.
 * State is kept in memory and refreshed from the engine's event stream, so a warm ensure costs no
 * engine round trip. It reaches the engine only through its EnginePort.
 */
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { EnsureWorkspaceResult, WorkspaceParams, WorkspaceSummary } from "../service.js";
import { adoptWorkspaceContainers, ownContainerLabels } from "./adopt.js";
import { ensureCold, type ColdEnsureContext } from "./cold-ensure.js";
import { WorkspaceEvents } from "./engine-events.js";
import { removeTenantTree } from "./host-dirs.js";
import { startIdleReaper, type IdleAction } from "./idle-reaper.js";
import { pauseIdleWorkspace, stopIdleWorkspace } from "./lifecycle.js";
import type { ImageProvider, WorkspaceManagerOptions, WorkspaceNetwork } from "./manager-options.js";
import { workspacePaths, type WorkspacePaths } from "./paths.js";
import { egressInForce, isolationReport, paramsKey, type WorkspaceRecord } from "./record.js";
import { WorkspaceRegistry } from "./registry.js";
import { containerName, type SpecContext } from "./spec.js";
import { WorkspaceTransitions } from "./transitions.js";
import { checkUidHolder, type UidHold } from "./uid-holders.js";

export type { ImageProvider, WorkspaceManagerOptions, WorkspaceNetwork };

export class WorkspaceManager {
  private readonly records: WorkspaceRegistry;
  private readonly events: WorkspaceEvents;
  /** What the cold path of an ensure (cold-ensure.ts) works with. */
  private readonly cold: ColdEnsureContext;
  private readonly transitions = new WorkspaceTransitions();
  /** Per workspace, the params of a cold ensure in flight: its uid is held from the call on, before anything is made. */
  private readonly ensuring = new Map<string, WorkspaceParams>();
  private imageRef: string | null = null;
  private reaper: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: WorkspaceManagerOptions) {
    this.records = new WorkspaceRegistry(options.stateDir);
    const { engine, log, runtimes, disks, stateDir, maxWorkspaces, defaultEgress } = options;
    this.cold = {
      engine,
      log,
      runtimes,
      disks,
      stateDir,
      maxWorkspaces,
      defaultEgress,
      records: this.records,
      following: () => this.events.following,
      contextFor: (runtime, signal) => this.contextFor(runtime, signal),
      forget: (workspaceId) => this.forget(workspaceId),
      serveNetwork: (record) => this.serveNetwork(record),
    };
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
      busy: (workspaceId) => this.transitions.busy(workspaceId),
      apply: (record, action) => this.transitions.run(record.params.workspaceId, () => this.applyIdle(record, action)),
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    this.events.close();
    for (const record of this.records.values()) record.sink.close();
    this.options.engine.closeAllExecs();
    await this.options.engine.settleExecs(2000); // an exec start in flight is closed as it completes
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
    if (this.transitions.busy(params.workspaceId)) {
      await this.transitions.settled(params.workspaceId);
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
    const attempt = this.transitions.run(params.workspaceId, () =>
      ensureCold(this.cold, params, signal).finally(() => this.ensuring.delete(params.workspaceId)),
    );
    void attempt.then(
      () => this.options.onEnsured?.("cold", (performance.now() - started) / 1000),
      () => undefined,
    );
    return attempt;
  }

  /**
   * For a turn that holds the workspace (acquireTurn): waits out a pause or stop begun before it
   * did, and brings the container back. Costs nothing when the container runs and nothing is in flight.
   */
  async ready(workspaceId: string, signal?: AbortSignal): Promise<void> {
    const record = this.get(workspaceId);
    if (!this.transitions.busy(workspaceId) && record.state === "running") return;
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
    await this.transitions.run(workspaceId, () =>
      stopIdleWorkspace(transition, record, "its sandbox stalled during a turn", 1),
    );
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

  private async applyIdle(record: WorkspaceRecord, action: IdleAction): Promise<void> {
    const transition = {
      engine: this.options.engine,
      log: this.options.log,
      forget: (workspaceId: string) => this.forget(workspaceId),
    };
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
    return {
      workspaceId: params.workspaceId,
      containerId: record.containerId,
      containerName: record.name,
      created: false,
      state: record.state,
      isolation,
    };
  }

  /** Serves the sockets the workspace's forwarders reach: its only way out. */
  private serveNetwork(record: WorkspaceRecord): Promise<void> {
    const { workspaceId, uid, gid } = record.params;
    return this.options.network.ensure({
      workspaceId,
      uid,
      gid,
      dir: record.paths.net,
      policy: () => egressInForce(record),
    });
  }

  async remove(workspaceId: string, purgeHome: boolean): Promise<{ removed: boolean }> {
    const record = this.records.find(workspaceId);
    if (record?.activeTurnId) {
      throw new SidecarError(
        ErrorCode.workspaceBusy,
        `workspace ${workspaceId} is running turn ${record.activeTurnId}`,
        {
          data: { field: "workspaceId", reason: "cancel the running turn before removing the workspace" },
        },
      );
    }
    await this.transitions.settled(workspaceId);
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
        log.error("could not serve an adopted workspace's network; its turns cannot reach the model", {
          workspaceId: record.params.workspaceId,
          error: errorMessage(error),
        });
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
