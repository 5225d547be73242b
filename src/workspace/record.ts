/** What the sidecar knows about one workspace container, and the one builder of it (ensured and adopted alike). */
import type { ContainerState, WorkspaceParams } from "../service.js";
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
  activeTurnId: string | null;
  paths: WorkspacePaths;
  sink: LogSink;
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
    activeTurnId: null,
    paths: fields.paths,
    sink: new LogSink(fields.paths.logFifo),
  };
}
