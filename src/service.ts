/**
 * The sidecar's operations, independent of transport. The RPC layer (src/rpc/) validates params
 * into these types and calls a SidecarService; src/sidecar.ts wires the real implementation.
 */
import type { ModelReasoningEffort, ThreadEvent, ThreadItem, ThreadOptions, Usage } from "@openai/codex-sdk";
import type { EgressDescription, EgressPolicy } from "./policy/egress-policy.js";

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

export type ContainerState = "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead" | "missing";

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

/** How the sidecar bounds each workspace's disk: "image" (a loop-mounted filesystem image per workspace) or "none". */
export interface DiskHealth {
  /** The enforcement in force. */
  enforcement: "image" | "none";
  /** Workspace disks attached (mounted) now. */
  attached: number;
  /** The operator's ALIVE_CODEX_DISK: with "auto", `enforcement` is what start-up chose for this host. */
  requested?: "auto" | "image" | "off";
  /** With "auto" settled on "none": what the host lacks for disk limits, each naming how to get it. */
  missing?: string[];
}

/**
 * A workspace container's isolation, measured from the running container (inspect plus a process
 * exec'd inside as the workspace user), not echoed from its spec (docs/security.md "Isolation report").
 */
export interface IsolationReport {
  containerId: string;
  /** The OCI runtime the engine ran it with ("runc", "runsc"). */
  runtime: string;
  user: { uid: number; gid: number; groups: number[] };
  /** As /proc/self/status shows them, hex (all zero: no capability at all). */
  capabilities: { effective: string; permitted: string; bounding: string; ambient: string };
  /** PR_GET_NO_NEW_PRIVS as the workspace user sees it (setpriv --dump), else /proc/self/status. */
  noNewPrivs: boolean;
  /** "filter": a seccomp BPF filter (runc); "gvisor-sentry": gVisor's own kernel is the filter (it reports Seccomp 0). */
  seccomp: "filter" | "strict" | "disabled" | "gvisor-sentry";
  readOnlyRoot: boolean;
  /** Mounts outside /proc, /dev and /sys, as the container sees them. */
  mounts: Array<{ path: string; readOnly: boolean }>;
  /** From the container's cgroup as seen inside ("cgroup"), else from the engine ("inspect"). */
  limits: { pids: number | null; memoryBytes: number | null; cpus: number | null; source: "cgroup" | "inspect" };
  /** Interfaces inside (only "lo" for network none) and whether a default route exists. */
  network: { interfaces: string[]; defaultRoute: boolean };
  /** The policy in force and how it is enforced: no network of its own, only the sidecar's proxies. */
  egress: { policy: EgressDescription; enforcedBy: "sidecar-proxy" };
  /** Where the model key is: in the sidecar's model proxy, never in the container. */
  modelKey: "proxy";
  /** A TCP connect from inside to the host's addresses: false when none got through or was refused by the host; evidence holds the errors. */
  hostReachable: boolean;
  hostProbe: string;
  measuredAt: string;
  /** How long the measurement took (inspect and exec in parallel). */
  measuredMs: number;
}

export type TurnInputItem = { type: "text"; text: string } | { type: "local_image"; path: string };
export type TurnInput = string | TurnInputItem[];

/**
 * The reasoning efforts turn.run accepts (docs/protocol.md): codex-sdk's ModelReasoningEffort names more
 * than the protocol promises, so this list narrows it (and the compiler keeps it a subset).
 */
export const REASONING_EFFORTS = ["minimal", "low", "medium", "high", "xhigh"] as const satisfies readonly ModelReasoningEffort[];

/** turn.run options: codex-sdk's ThreadOptions where it defines them, plus the sidecar's own. */
export interface TurnRunOptions
  extends Pick<ThreadOptions, "model" | "sandboxMode" | "approvalPolicy" | "networkAccessEnabled" | "additionalDirectories" | "webSearchMode"> {
  modelReasoningEffort?: (typeof REASONING_EFFORTS)[number];
  outputSchema?: Record<string, unknown>;
  timeoutMs?: number;
  /** Limits that stop the turn (error.code "budget_exceeded") when crossed; absent: the operator's defaults. */
  budget?: TurnBudgetRequest;
  /** What the client's disconnect does to the turn: "cancel" (default) or "continue" (it runs on; turn.attach follows it). */
  onDisconnect?: TurnDisconnectPolicy;
}

export const DISCONNECT_POLICIES = ["cancel", "continue"] as const;
export type TurnDisconnectPolicy = (typeof DISCONNECT_POLICIES)[number];

export interface TurnBudgetRequest {
  /** Model tokens (input + output, as the model API counts them) over the turn's model requests. */
  tokens?: number;
  /** CPU time of the workspace container over the turn. */
  cpuSeconds?: number;
}

/** What the workspace container used over the turn, from its cgroup; null where the cgroup could not be read. */
export interface TurnResources {
  cpuSeconds: number | null;
  peakMemoryBytes: number | null;
  wallMs: number;
}

/** Exact token counts of the turn's model requests, as the sidecar's model proxy read them off the responses. */
export interface TurnTokens {
  input: number;
  cached: number;
  output: number;
  reasoning: number;
}

export interface McpServerSpec {
  command: string;
  args?: string[];
  env?: Record<string, string>;
}

export interface RunTurnParams {
  workspaceId: string;
  turnId?: string;
  /** A codex thread id (UUID) to resume. */
  threadId?: string;
  input: TurnInput;
  options?: TurnRunOptions;
  mcpServers?: Record<string, McpServerSpec>;
  /** turn.run may carry the workspace.ensure fields; then the workspace is ensured first. */
  workspace?: WorkspaceParams;
}

export type TurnStatus = "completed" | "failed" | "cancelled" | "timed_out";

export interface TurnResult {
  turnId: string;
  threadId: string | null;
  status: TurnStatus;
  finalResponse: string;
  items: ThreadItem[];
  /** As codex reports it: cumulative over the thread when a thread is resumed. */
  usage: Usage | null;
  /** This turn alone: usage minus the thread's previous turn (extension). */
  turnUsage: Usage | null;
  /** The workspace container's CPU time, peak memory and the turn's wall time (extension). */
  resources: TurnResources;
  /** Tokens the sidecar's model proxy counted for this turn (extension). */
  tokens: TurnTokens;
  /**
   * Completed items of the turn that `items` does not hold (extension): past the result's bounds,
   * or left out of the journal's copy to keep the turn within its journal bound. Absent when none.
   */
  itemsOmitted?: number;
  /** `finalResponse` was cut at its bound (extension). Absent when it was not. */
  finalResponseTruncated?: true;
  error?: { code: string; message: string };
}

export interface TurnHooks {
  /**
   * Called for every event in order; seq counts from 0 without gaps. The first comes before codex
   * starts. `line`, when given, is the event's turn.event notification line (shared/turn-event-line.ts),
   * made once for the journal and the wire.
   */
  onEvent(turnId: string, seq: number, event: ThreadEvent | TurnStartedByEvent, line?: string): void;
  /** Aborting it cancels the turn (status "cancelled"). */
  signal?: AbortSignal;
}

/** The sidecar's own first event of a turn, sent before codex starts (an extension to ThreadEvent). */
export interface TurnStartedByEvent {
  type: "sidecar.turn.accepted";
  turn_id: string;
  workspace_id: string;
  thread_id: string | null;
}

/** The codex CLI the workspaces run (sidecar.health's `codex`; docs/image.md, "Codex version"). */
export interface CodexHealth {
  /** As found in the runtime image (its dev.alive.codex.codex-version label, else its /opt/codex/codex-package.json); null until the image is present and read. */
  version: string | null;
  /** ALIVE_CODEX_CODEX_VERSION, else the SDK's when the sidecar builds the image; null when ALIVE_CODEX_IMAGE names the image and no version is set. */
  requested: string | null;
  /** The @openai/codex version @openai/codex-sdk was released with (the default). */
  sdk: string;
  /** Whether the sidecar's core turn tests ran against `version` (else `requested`). */
  tested: boolean;
  /** Flags the sidecar adds to every `codex exec` for this version. */
  flags: string[];
}

export interface HealthResult {
  version: string;
  /** The codex version the workspaces run: `codex.version` when found, else `codex.requested`, else the SDK's. */
  codexVersion: string;
  /** Extension: the codex CLI in detail. */
  codex?: CodexHealth;
  docker: { reachable: boolean; serverVersion?: string };
  image: { ref: string; present: boolean };
  workspaces: { running: number; total: number };
  turns: { running: number; detached: number };
  disk?: DiskHealth;
}

/** A turn as turn.list and turn.get describe it (from the running turns and the turn journal). */
export interface TurnSummary {
  turnId: string;
  workspaceId: string;
  status: "running" | TurnStatus;
  /** The seq of the turn's last event so far (-1: none). */
  lastSeq: number;
  startedAt: string;
  endedAt: string | null;
  /** Running, its turn.run client gone (onDisconnect "continue"), and no connection attached. */
  detached: boolean;
}

export interface TurnInfo extends TurnSummary {
  /** Once the turn has ended. */
  result: TurnResult | null;
}

export interface AttachTurnHooks {
  /** Called for every event with seq > afterSeq, in order, replayed then live; `line` as in TurnHooks (a replayed event comes as its line alone, `event` null). */
  onEvent(turnId: string, seq: number, event: ThreadEvent | TurnStartedByEvent | null, line?: string): void;
  /** Aborted when the attaching client goes away (the turn runs on). */
  signal: AbortSignal;
}

export interface SidecarService {
  health(signal?: AbortSignal): Promise<HealthResult>;
  ensureWorkspace(params: WorkspaceParams, signal?: AbortSignal): Promise<EnsureWorkspaceResult>;
  listWorkspaces(signal?: AbortSignal): Promise<{ workspaces: WorkspaceSummary[] }>;
  removeWorkspace(params: { workspaceId: string; purgeHome?: boolean }, signal?: AbortSignal): Promise<{ removed: boolean }>;
  /** The workspace container's log (what `docker logs` shows), last `tail` lines. */
  workspaceLogs(params: { workspaceId: string; tail?: number }, signal?: AbortSignal): Promise<{ logs: string }>;
  runTurn(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult>;
  cancelTurn(params: { turnId: string }): Promise<{ cancelled: boolean }>;
  /** The turn's events after afterSeq (journal, then live), then its result; -32004 for an unknown turn. */
  attachTurn(params: { turnId: string; afterSeq?: number }, hooks: AttachTurnHooks): Promise<TurnResult>;
  getTurn(params: { turnId: string }): Promise<TurnInfo>;
  listTurns(params: { workspaceId?: string; status?: TurnSummary["status"] }): Promise<{ turns: TurnSummary[] }>;
}
