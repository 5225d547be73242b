/** What a WorkspaceManager is made with: the engine, the image, the network and disks of each workspace, and the operator's settings. */
import type { EnginePort } from "../docker/engine-port.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { WorkspaceNet } from "../egress/workspace-endpoints.js";
import type { Logger } from "../log.js";
import type { WorkspaceConnections } from "../service.js";
import type { WorkspaceDisks } from "./disk-image.js";
import type { WorkspaceRuntimes } from "./runtimes.js";
import type { SpecSettings } from "./spec.js";

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
