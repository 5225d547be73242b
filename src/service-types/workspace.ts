/** What the service takes and gives for a workspace: workspace.ensure's params, its result, and workspace.list's summaries. */
import type { EgressDescription, EgressPolicy } from "../policy/egress-policy.js";
import type { SecretBindingSummary } from "./secrets.js";
import type { IsolationReport } from "./isolation.js";

/** "default": the sidecar's egress proxy under the workspace's policy; "none": the model API only. Either way the container has no network of its own. */
export type NetworkMode = "default" | "none";

export interface ResourceRequest {
  memoryMb?: number;
  cpus?: number;
  pids?: number;
  /** The workspace's disk in MiB: enforced when the operator enables disk limits (ALIVE_CODEX_DISK). */
  diskMb?: number;
  /** The most files and directories the workspace's disk holds; fixed when that disk is made. */
  diskInodes?: number;
}

export interface WorkspaceParams {
  workspaceId: string;
  userId: string;
  uid: number;
  gid: number;
  /** Absolute, already resolved through symlinks and checked against the workspace roots. */
  workspacePath: string;
  git?: { name?: string; email?: string };
  network?: NetworkMode;
  resources?: ResourceRequest;
  /** Where the workspace may connect through the sidecar's egress proxy; absent: the operator's default. */
  egress?: EgressPolicy;
  /** The OCI runtime ("runc", "runsc", ...) as asked for; absent: the operator's default (docs/runtimes.md). */
  runtime?: string;
}

export type ContainerState =
  "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead" | "missing";

export interface EnsureWorkspaceResult {
  workspaceId: string;
  containerId: string;
  containerName: string;
  created: boolean;
  state: ContainerState;
  /** What was measured of the running container (extension; docs/security.md "Isolation report"). */
  isolation?: IsolationReport;
}

export interface WorkspaceSummary {
  workspaceId: string;
  userId: string;
  containerId: string;
  containerName: string;
  state: ContainerState;
  createdAt: string;
  lastActiveAt: string;
  activeTurnId: string | null;
  /** The egress policy in force (network "none" and a turn without network access narrow it to "model"). */
  egress: EgressDescription;
  /** How the workspace reaches out: no network of its own, only the sidecar's proxies; refusals counted; its connections now (extension). */
  network: { mode: "none"; via: "sidecar"; egressRefusals: number; connections?: WorkspaceConnections };
  /** The workspace's own disk (HOME, TMPDIR, run dir) when disk limits are on and it is attached; else null. */
  disk?: DiskUsage | null;
  /** What was measured of the container (extension); null until an ensure has measured it (an adopted container not yet ensured). */
  isolation: IsolationReport | null;
  /** The OCI runtime the container runs under (null: an adopted container made before runtimes were labelled). */
  runtime: string | null;
  /** Its secret bindings in force (the workspace's and its running turn's): hosts, headers, env names, counts; never a value. */
  secrets?: SecretBindingSummary[];
}

/**
 * A workspace's connections through the sidecar's proxies (docs/protocol.md): open now, and refused
 * for a bound or cut since the sidecar started serving the workspace.
 */
export interface WorkspaceConnections {
  /** Connections open now on its egress proxy, model proxy and Alive API sockets. */
  proxy: number;
  model: number;
  api: number;
  /** CONNECT tunnels open now, and http:// requests the egress proxy is forwarding now. */
  tunnels: number;
  requests: number;
  /** Requests to Alive's API in flight now. */
  apiRequests: number;
  /** Connections and requests answered 429/503 for a bound. */
  refusedForLimit: number;
  /** Tunnels and forwarded requests the egress proxy closed itself: idle, too old, or when a turn narrowed the egress. */
  cut: number;
}

/** A workspace disk's size and use (statfs of its filesystem: no walk of the tree). */
export interface DiskUsage {
  /** Bytes and inodes the workspace may use in all, and uses now. */
  limitBytes: number;
  usedBytes: number;
  limitInodes: number;
  usedInodes: number;
}
