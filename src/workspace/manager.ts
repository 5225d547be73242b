/**
 * Workspace containers: ensure (idempotent, single-flight), adopt at start-up, list, stop when
 * idle, remove. State is kept in memory and refreshed from the engine's event stream, so a warm
 * ensure costs no engine round trip.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type Docker from "dockerode";
import { execa } from "execa";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { isConflict, isNotFound, isNotModified, toSidecarError, withDocker } from "../docker/engine.js";
import { demuxFrames } from "../docker/exec.js";
import { ExecStreams } from "../docker/exec-streams.js";
import { Labels, managedFilter } from "../docker/labels.js";
import { LineSplitter } from "../shared/line-splitter.js";
import type { ContainerState, EnsureWorkspaceResult, WorkspaceParams, WorkspaceSummary } from "../service.js";
import { LogSink } from "./log-sink.js";
import { workspacePaths, type WorkspacePaths } from "./paths.js";
import { SHELL_RC_TARGETS, buildWorkspaceSpec, containerName, type SpecContext } from "./spec.js";

export interface ImageProvider {
  /** Makes sure the runtime image exists (building it if needed) and returns its reference. */
  ensure(signal?: AbortSignal): Promise<{ ref: string }>;
}

export interface WorkspaceManagerOptions {
  docker: Docker;
  log: Logger;
  image: ImageProvider;
  stateDir: string;
  maxWorkspaces: number;
  idleTimeoutMs: number;
  spec: Omit<SpecContext, "image">;
}

export interface WorkspaceRecord {
  params: WorkspaceParams;
  paramsKey: string;
  containerId: string;
  name: string;
  specHash: string;
  state: ContainerState;
  createdAt: string;
  lastActiveAt: number;
  activeTurnId: string | null;
  paths: WorkspacePaths;
  sink: LogSink;
}

const SHELL_RC = "# Managed by alive-codex-sidecar: read-only, so nothing in HOME can change what agent shells start with.\numask 022\n";

export class WorkspaceManager {
  private readonly records = new Map<string, WorkspaceRecord>();
  private readonly ensuring = new Map<string, Promise<EnsureWorkspaceResult>>();
  private imageRef: string | null = null;
  private networkReady: Promise<void> | null = null;
  private events: NodeJS.ReadableStream | null = null;
  private reaper: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: WorkspaceManagerOptions) {}

  /** Adopts our containers left by an earlier sidecar, follows engine events, starts the idle reaper. */
  async start(): Promise<void> {
    if (this.closed) return;
    await this.followEvents();
    await this.reconcile();
    if (this.options.idleTimeoutMs > 0) {
      const every = Math.max(1000, Math.min(60_000, Math.floor(this.options.idleTimeoutMs / 2)));
      this.reaper = setInterval(() => void this.stopIdle(), every);
      this.reaper.unref();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    (this.events as (NodeJS.ReadableStream & { destroy?: () => void }) | null)?.destroy?.();
    for (const record of this.records.values()) record.sink.close();
    ExecStreams.of(this.options.docker).destroyAll();
  }

  get(workspaceId: string): WorkspaceRecord {
    const record = this.records.get(workspaceId);
    if (!record) {
      throw new SidecarError(ErrorCode.unknownWorkspace, `unknown workspace ${JSON.stringify(workspaceId)}: call workspace.ensure first`, {
        data: { field: "workspaceId", reason: "no container for this workspace; call workspace.ensure first" },
      });
    }
    return record;
  }

  paths(workspaceId: string): WorkspacePaths {
    return this.records.get(workspaceId)?.paths ?? workspacePaths(this.options.stateDir, workspaceId);
  }

  find(workspaceId: string): WorkspaceRecord | undefined {
    return this.records.get(workspaceId);
  }

  counts(): { running: number; total: number } {
    let running = 0;
    for (const record of this.records.values()) if (record.state === "running") running += 1;
    return { running, total: this.records.size };
  }

  /** -32003 if the workspace runs a turn. */
  assertIdle(workspaceId: string): void {
    const active = this.records.get(workspaceId)?.activeTurnId ?? null;
    if (active !== null) {
      throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${workspaceId} is busy with turn ${active}`, {
        data: { field: "workspaceId", reason: "a turn is already running in this workspace; wait for it or cancel it", activeTurnId: active },
      });
    }
  }

  /** Marks a workspace busy with a turn; -32003 if it already runs one. */
  acquireTurn(workspaceId: string, turnId: string): WorkspaceRecord {
    const record = this.get(workspaceId);
    this.assertIdle(workspaceId);
    record.activeTurnId = turnId;
    record.lastActiveAt = Date.now();
    return record;
  }

  releaseTurn(workspaceId: string, turnId: string): void {
    const record = this.records.get(workspaceId);
    if (record && record.activeTurnId === turnId) {
      record.activeTurnId = null;
      record.lastActiveAt = Date.now();
    }
  }

  list(): WorkspaceSummary[] {
    return [...this.records.values()].map((r) => ({
      workspaceId: r.params.workspaceId,
      userId: r.params.userId,
      containerId: r.containerId,
      containerName: r.name,
      state: r.state,
      createdAt: r.createdAt,
      lastActiveAt: new Date(r.lastActiveAt).toISOString(),
      activeTurnId: r.activeTurnId,
    }));
  }

  /** Idempotent and single-flight per workspace: concurrent calls share one creation. */
  async ensure(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult> {
    const warm = this.warmResult(params);
    if (warm) return warm;
    const inflight = this.ensuring.get(params.workspaceId);
    if (inflight) {
      await inflight.catch(() => undefined);
      return this.ensure(params, signal);
    }
    const attempt = this.ensureCold(params, signal).finally(() => this.ensuring.delete(params.workspaceId));
    this.ensuring.set(params.workspaceId, attempt);
    return attempt;
  }

  private warmResult(params: WorkspaceParams): EnsureWorkspaceResult | null {
    const record = this.records.get(params.workspaceId);
    if (!record || record.state !== "running" || this.imageRef === null || this.events === null) return null;
    if (record.paramsKey !== JSON.stringify(params)) return null;
    record.lastActiveAt = Date.now();
    return { workspaceId: params.workspaceId, containerId: record.containerId, containerName: record.name, created: false, state: record.state };
  }

  private async ensureCold(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult> {
    const { docker, log } = this.options;
    if (this.imageRef === null) this.imageRef = (await this.options.image.ensure(signal)).ref;
    const paths = workspacePaths(this.options.stateDir, params.workspaceId);
    const spec = buildWorkspaceSpec(params, paths, { ...this.options.spec, image: this.imageRef });
    let record = this.records.get(params.workspaceId);

    if (record && record.specHash !== spec.hash) {
      if (record.activeTurnId !== null) {
        throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${params.workspaceId} runs a turn; its container can only be replaced when idle`, {
          data: { field: "workspaceId", reason: "the requested settings differ from the running container's and a turn is running" },
        });
      }
      log.info("replacing workspace container made from an older spec", { workspaceId: params.workspaceId, containerId: record.containerId });
      await this.removeContainer(record.containerId);
      this.forget(params.workspaceId);
      record = undefined;
    }

    if (record) {
      if (record.state !== "running") await this.startContainer(record.containerId, signal);
      record.state = "running";
      record.lastActiveAt = Date.now();
      record.paramsKey = JSON.stringify(params);
      return { workspaceId: params.workspaceId, containerId: record.containerId, containerName: record.name, created: false, state: "running" };
    }

    if (this.records.size >= this.options.maxWorkspaces) {
      throw new SidecarError(ErrorCode.limitReached, `the sidecar already has ${this.records.size} workspaces (limit ${this.options.maxWorkspaces})`, {
        data: { field: "workspaceId", reason: "workspace limit reached; remove idle workspaces or raise ALIVE_CODEX_MAX_WORKSPACES" },
      });
    }
    await prepareWorkspaceDirs(paths, params.uid, params.gid);
    if (params.network !== "none") await this.ensureNetwork();

    let containerId: string;
    let created = true;
    try {
      containerId = (await docker.createContainer({ ...spec.options, ...(signal ? { abortSignal: signal } : {}) })).id;
    } catch (error) {
      if (!isConflict(error)) throw toSidecarError(error, `create the container for workspace ${params.workspaceId}`);
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
      await this.startContainer(containerId, signal);
    } catch (error) {
      if (created) await this.removeContainer(containerId).catch(() => undefined);
      throw error;
    }
    const now = Date.now();
    this.records.set(params.workspaceId, {
      params,
      paramsKey: JSON.stringify(params),
      containerId,
      name: spec.name,
      specHash: spec.hash,
      state: "running",
      createdAt: new Date(now).toISOString(),
      lastActiveAt: now,
      activeTurnId: null,
      paths,
      sink: new LogSink(paths.logFifo),
    });
    log.info(created ? "workspace container created" : "workspace container adopted", { workspaceId: params.workspaceId, containerId });
    return { workspaceId: params.workspaceId, containerId, containerName: spec.name, created, state: "running" };
  }

  /** The dedicated bridge for workspace containers: inter-container traffic off. */
  ensureNetwork(): Promise<void> {
    this.networkReady ??= ensureWorkspaceNetwork(this.options.docker, this.options.spec.network, this.options.spec.extraLabels).then(
      () => undefined,
      (error: unknown) => {
        this.networkReady = null;
        throw error;
      },
    );
    return this.networkReady;
  }

  async remove(workspaceId: string, purgeHome: boolean): Promise<{ removed: boolean }> {
    const record = this.records.get(workspaceId);
    if (record?.activeTurnId) {
      throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${workspaceId} is running turn ${record.activeTurnId}`, {
        data: { field: "workspaceId", reason: "cancel the running turn before removing the workspace" },
      });
    }
    await this.ensuring.get(workspaceId)?.catch(() => undefined);
    let removed = false;
    const target = record?.containerId ?? containerName(workspaceId);
    try {
      await this.options.docker.getContainer(target).remove({ force: true, v: true });
      removed = true;
    } catch (error) {
      if (!isNotFound(error)) throw toSidecarError(error, `remove the container of workspace ${workspaceId}`);
    }
    if (record) removed = true;
    this.forget(workspaceId);
    if (purgeHome) {
      const paths = workspacePaths(this.options.stateDir, workspaceId);
      await fs.rm(paths.root, { recursive: true, force: true });
    }
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

  /** Drops the record; connections to processes of its container are closed (the engine may never close them). */
  private forget(workspaceId: string): void {
    const record = this.records.get(workspaceId);
    if (!record) return;
    record.sink.close();
    ExecStreams.of(this.options.docker).destroyContainer(record.containerId);
    this.records.delete(workspaceId);
  }

  private async startContainer(containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.options.docker.getContainer(containerId).start(signal ? { abortSignal: signal } : {});
    } catch (error) {
      if (!isNotModified(error)) throw toSidecarError(error, `start container ${containerId.slice(0, 12)}`);
    }
  }

  private async removeContainer(containerId: string): Promise<void> {
    try {
      await this.options.docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (error) {
      if (!isNotFound(error)) throw toSidecarError(error, `remove container ${containerId.slice(0, 12)}`);
    }
  }

  private ownFilter(): { label: string[] } {
    return managedFilter({ [Labels.stateDir]: this.options.stateDir });
  }

  /** Adopts containers with our labels; leaves everything else alone. */
  async reconcile(): Promise<void> {
    const { docker, log } = this.options;
    const containers = await withDocker("list workspace containers", () => docker.listContainers({ all: true, filters: this.ownFilter() }));
    for (const summary of containers) {
      const labels = summary.Labels ?? {};
      const params = parseParamsLabel(labels[Labels.params]);
      if (!params || this.records.has(params.workspaceId)) {
        log.warn("ignoring a labelled container without usable workspace params", { containerId: summary.Id });
        continue;
      }
      const paths = workspacePaths(this.options.stateDir, params.workspaceId);
      this.records.set(params.workspaceId, {
        params,
        paramsKey: JSON.stringify(params),
        containerId: summary.Id,
        name: (summary.Names[0] ?? "").replace(/^\//, ""),
        specHash: labels[Labels.specHash] ?? "",
        state: toState(summary.State),
        createdAt: new Date(summary.Created * 1000).toISOString(),
        lastActiveAt: Date.now(),
        activeTurnId: null,
        paths,
        sink: new LogSink(paths.logFifo),
      });
      log.info("adopted workspace container", { workspaceId: params.workspaceId, containerId: summary.Id, state: summary.State });
    }
  }

  private async stopIdle(): Promise<void> {
    const now = Date.now();
    for (const record of this.records.values()) {
      if (record.state !== "running" || record.activeTurnId !== null) continue;
      if (now - record.lastActiveAt < this.options.idleTimeoutMs) continue;
      this.options.log.info("stopping idle workspace container", { workspaceId: record.params.workspaceId, containerId: record.containerId });
      try {
        await this.options.docker.getContainer(record.containerId).stop({ t: 5 });
        record.state = "exited";
      } catch (error) {
        if (isNotModified(error)) record.state = "exited";
        else if (isNotFound(error)) this.forget(record.params.workspaceId);
        else this.options.log.warn("could not stop idle workspace container", { workspaceId: record.params.workspaceId, error: errorMessage(error) });
      }
    }
  }

  private async followEvents(): Promise<void> {
    const stream = (await withDocker("follow engine events", () =>
      this.options.docker.getEvents({ filters: { type: ["container"], ...this.ownFilter() } }),
    )) as NodeJS.ReadableStream;
    this.events = stream;
    const lines = new LineSplitter();
    stream.on("data", (chunk: Buffer) => {
      for (const line of lines.push(chunk)) if (line.kind === "line" && line.text.trim() !== "") this.applyEvent(line.text);
    });
    const lost = (): void => {
      if (this.events !== stream) return;
      this.events = null;
      if (this.closed) return;
      this.options.log.warn("lost the engine event stream; warm ensures will check the engine until it is back");
      const retry = setTimeout(() => void this.followEvents().then(() => this.reconcile()).catch(() => lost()), 2000);
      retry.unref();
    };
    stream.on("end", lost);
    stream.on("error", lost);
  }

  private applyEvent(line: string): void {
    let event: { Action?: string; id?: string; timeNano?: number; Actor?: { Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return;
    }
    const workspaceId = event.Actor?.Attributes?.[Labels.workspaceId];
    const record = workspaceId === undefined ? undefined : this.records.get(workspaceId);
    if (!record || record.containerId !== event.id) return;
    switch (event.Action) {
      case "start":
        record.state = "running";
        break;
      case "die":
        record.state = "exited";
        // Its processes are gone; their exec connections may stay open until we close them.
        ExecStreams.of(this.options.docker).destroyContainer(record.containerId, event.timeNano === undefined ? Infinity : event.timeNano / 1e6);
        break;
      case "destroy":
        this.forget(record.params.workspaceId);
        break;
      default:
        break;
    }
  }
}

/** Creates the workspace bridge (inter-container traffic off) unless it exists; returns its gateway. */
export async function ensureWorkspaceNetwork(docker: Docker, name: string, extraLabels: Record<string, string> = {}): Promise<{ id: string; gateway: string | null }> {
  const inspect = async (): Promise<{ id: string; gateway: string | null }> => {
    const info = (await docker.getNetwork(name).inspect()) as { Id: string; IPAM?: { Config?: Array<{ Gateway?: string }> } };
    return { id: info.Id, gateway: info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway ?? null };
  };
  try {
    return await inspect();
  } catch (error) {
    if (!isNotFound(error)) throw toSidecarError(error, `inspect network ${name}`);
  }
  try {
    await docker.createNetwork({
      Name: name,
      Driver: "bridge",
      CheckDuplicate: true,
      Labels: { ...extraLabels, [Labels.managed]: "true" },
      Options: { "com.docker.network.bridge.enable_icc": "false" },
    });
  } catch (error) {
    if (!isConflict(error)) throw toSidecarError(error, `create network ${name}`);
  }
  return withDocker(`inspect network ${name}`, inspect);
}

/** HOME (with .codex/ and .claude/) and TMPDIR owned by the workspace's uid:gid; run/ stays root's. */
export async function prepareWorkspaceDirs(paths: WorkspacePaths, uid: number, gid: number): Promise<void> {
  await fs.mkdir(paths.root, { recursive: true, mode: 0o711 });
  for (const dir of [paths.home, paths.codexHome, paths.claudeHome, paths.tmp]) await ensureOwnedDir(dir, uid, gid);
  // The read-only rc files are mounted over these names: whatever the tenant left there instead
  // of a plain file (a directory, a symlink) would break or redirect that mount.
  for (const name of SHELL_RC_TARGETS) {
    const target = path.join(paths.home, name);
    const stat = await fs.lstat(target).catch(() => null);
    if (stat && !stat.isFile()) await fs.rm(target, { recursive: true, force: true });
  }
  await fs.mkdir(paths.run, { recursive: true, mode: 0o755 });
  await fs.writeFile(paths.shellRc, SHELL_RC, { mode: 0o644 });
  const fifo = await fs.lstat(paths.logFifo).catch(() => null);
  if (fifo && !fifo.isFIFO()) await fs.rm(paths.logFifo, { force: true });
  if (!fifo || !fifo.isFIFO()) await execa("mkfifo", ["-m", "0644", paths.logFifo]);
}

/** Creates a directory for uid:gid; never follows a symlink a tenant may have planted there. */
async function ensureOwnedDir(dir: string, uid: number, gid: number): Promise<void> {
  const existing = await fs.lstat(dir).catch(() => null);
  if (existing?.isDirectory()) {
    if (existing.uid !== uid || existing.gid !== gid) await fs.lchown(dir, uid, gid);
    return;
  }
  if (existing) await fs.rm(dir, { force: true });
  await fs.mkdir(dir, { mode: 0o700 });
  await fs.lchown(dir, uid, gid);
}

function parseParamsLabel(raw: string | undefined): WorkspaceParams | null {
  if (raw === undefined) return null;
  try {
    const value = JSON.parse(raw) as Partial<WorkspaceParams>;
    if (typeof value.workspaceId !== "string" || typeof value.uid !== "number" || typeof value.gid !== "number" || typeof value.workspacePath !== "string" || typeof value.userId !== "string") return null;
    return value as WorkspaceParams;
  } catch {
    return null;
  }
}

function toState(state: string): ContainerState {
  const known: ContainerState[] = ["created", "running", "paused", "restarting", "removing", "exited", "dead"];
  return (known as string[]).includes(state) ? (state as ContainerState) : "missing";
}

