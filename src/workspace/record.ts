/** What the sidecar knows about one workspace container, and the one builder of it (ensured and adopted alike). */
import { describeEgress, type EgressPolicy } from "../policy/egress-policy.js";
import type { ContainerState, IsolationReport, WorkspaceParams, WorkspaceSummary } from "../service.js";
import type { MeasuredIsolation } from "./isolation.js";
import { LogSink } from "./log-sink.js";
import type { WorkspacePaths } from "./paths.js";

export interface WorkspaceRecord {
  params: WorkspaceParams;
  paramsKey: string;
  containerId: string;
  name: string;
  specHash: string;
  state: ContainerState;
  createdAt: string;
  lastActiveAt: number;
  /** Since when the container has been paused (ms since the epoch; adopted paused: since adoption), else null. */
  pausedAt: number | null;
  activeTurnId: string | null;
  paths: WorkspacePaths;
  sink: LogSink;
  /** The workspace's egress policy (its own, else the operator's default; network "none": "model"). */
  egress: EgressPolicy;
  /** A narrower policy for the running turn (one without network access), or null. */
  turnEgress: EgressPolicy | null;
  /** The OCI runtime the container runs under; null when unknown (adopted without the label). */
  runtime: string | null;
  /** The container's isolation as measured (isolation-probe.ts), for containerId; null until measured. */
  isolation: MeasuredIsolation | null;
}

export interface WorkspaceRecordFields {
  params: WorkspaceParams;
  containerId: string;
  name: string;
  specHash: string;
  state: ContainerState;
  /** When the engine made the container; defaults to now (a container this call made). */
  createdAt?: string;
  paths: WorkspacePaths;
  /** The operator's default egress policy, for a workspace that names none. */
  defaultEgress: EgressPolicy;
  /** The OCI runtime the container runs under, if known. */
  runtime: string | null;
}

/** The key a warm ensure compares: the same params give the same container. */
export function paramsKey(params: WorkspaceParams): string {
  return JSON.stringify(params);
}

/** A record of a container just made, found or adopted: idle, active as of now, its log sink ready. */
export function buildWorkspaceRecord(fields: WorkspaceRecordFields): WorkspaceRecord {
  const now = Date.now();
  return {
    params: fields.params,
    paramsKey: paramsKey(fields.params),
    containerId: fields.containerId,
    name: fields.name,
    specHash: fields.specHash,
    state: fields.state,
    createdAt: fields.createdAt ?? new Date(now).toISOString(),
    lastActiveAt: now,
    pausedAt: fields.state === "paused" ? now : null,
    activeTurnId: null,
    paths: fields.paths,
    sink: new LogSink(fields.paths.logFifo),
    egress: workspaceEgress(fields.params, fields.defaultEgress),
    turnEgress: null,
    runtime: fields.runtime,
    isolation: null,
  };
}

/** The policy a workspace's params give: network "none" allows the model API alone. */
export function workspaceEgress(params: WorkspaceParams, defaultEgress: EgressPolicy): EgressPolicy {
  if (params.network === "none") return "model";
  return params.egress ?? defaultEgress;
}

/** The policy in force right now. */
export function egressInForce(record: WorkspaceRecord): EgressPolicy {
  return record.turnEgress ?? record.egress;
}

/** What workspace.list says of the record (the refusal count comes from the network's servers). */
export function summarizeRecord(r: WorkspaceRecord, egressRefusals: number): WorkspaceSummary {
  return {
    workspaceId: r.params.workspaceId,
    userId: r.params.userId,
    containerId: r.containerId,
    containerName: r.name,
    state: r.state,
    createdAt: r.createdAt,
    lastActiveAt: new Date(r.lastActiveAt).toISOString(),
    activeTurnId: r.activeTurnId,
    egress: describeEgress(egressInForce(r)),
    network: { mode: "none", via: "sidecar", egressRefusals },
    runtime: r.runtime,
    isolation: isolationReport(r),
  };
}

/** The measured isolation of the record's current container, with the egress policy in force now; null if not measured. */
export function isolationReport(r: WorkspaceRecord): IsolationReport | null {
  if (r.isolation === null || r.isolation.containerId !== r.containerId) return null;
  return { ...r.isolation, egress: { policy: describeEgress(egressInForce(r)), enforcedBy: "sidecar-proxy" } };
}
