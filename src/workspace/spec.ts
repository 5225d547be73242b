/** The pure part of a workspace: its container's create options and the hash of them. */
import { createHash } from "node:crypto";
import type { ContainerSpec } from "../docker/engine-port.js";
import { CONTAINER_HOME, CONTAINER_TMPDIR, buildCodexEnv, toDockerEnv } from "./container-env.js";
import { Labels } from "../docker/labels.js";
import { forwarderScript, insideApiUrl, proxyEnv } from "../egress/container-net.js";
import type { ResourceLimits, SidecarConfig } from "../config.js";
import type { WorkspaceParams } from "../service.js";
import type { WorkspacePaths } from "./paths.js";
import { hostPidsLimit } from "./runtimes.js";

export const CONTAINER_RUN_DIR = "/run/alive";
/** WorkspacePaths.turnFiles as codex sees it. */
export const CONTAINER_TURN_FILES_DIR = `${CONTAINER_RUN_DIR}/turns`;
/** Shell start-up files that codex's `bash -lc` reads: all point at the sidecar's read-only rc. */
export const SHELL_RC_TARGETS = [".bashrc", ".profile", ".bash_profile", ".bash_login"] as const;

/** The shell that runs the container's main script: the container's entrypoint. */
export const MAIN_SHELL = "/bin/sh";
/** WorkspacePaths.logFifo as the container sees it. */
export const CONTAINER_LOG_FIFO = `${CONTAINER_RUN_DIR}/log`;
/** The log pump's two commands: copy the FIFO to stdout, or wait while it cannot be opened. */
export const LOG_PUMP_COMMANDS = { copy: ["cat", CONTAINER_LOG_FIFO], wait: ["sleep", "1"] } as const;

/**
 * The container's main process (under the engine's init, which reaps zombies): it starts the
 * forwarders of the workspace's network (egress/container-net.ts), then copies what the sidecar
 * writes into the log FIFO to stdout, so `docker logs` shows each turn. It holds no secret.
 */
export function containerMainScript(withApi: boolean): string {
  return `${forwarderScript(withApi)}\nwhile :; do ${LOG_PUMP_COMMANDS.copy.join(" ")} 2>/dev/null || ${LOG_PUMP_COMMANDS.wait.join(" ")}; done`;
}

/** The main process's command line (the entrypoint, then Cmd): how it shows in the container's process list. */
export function containerMainCommand(withApi: boolean): string[] {
  return [MAIN_SHELL, "-c", containerMainScript(withApi)];
}

export function containerName(workspaceId: string): string {
  return `alive-codex-${workspaceId}`;
}

export interface SpecContext {
  image: string;
  /**
   * The OCI runtime, resolved (WorkspaceRuntimes: the workspace's, else the operator's, else the
   * engine's default, always by name). Only the manager resolves it (WorkspaceManager.specContext),
   * so a spec built anywhere hashes as the one its container was made from.
   */
  runtime: string;
  defaultResources: ResourceLimits;
  nofile: number;
  /** CFS period in µs; each workspace's quota is cpus × this. */
  cpuPeriodUs: number;
  aliveApiUrl: string | null;
  nodePath: string | null;
  /** Host directories mounted read-only at the same path (trusted code such as Alive's MCP servers). */
  trustedDirs: string[];
  /** Extra labels (e.g. a test run id); part of the spec. */
  extraLabels: Record<string, string>;
}

/** What the operator's settings put into every spec: the context less the image and the runtime, which the manager resolves. */
export type SpecSettings = Omit<SpecContext, "image" | "runtime">;

/** The spec settings a sidecar's configuration gives. */
export function specContextFromConfig(
  config: Pick<
    SidecarConfig,
    "defaultResources" | "nofile" | "cpuPeriodUs" | "aliveApiUrl" | "nodePath" | "trustedDirs"
  >,
  extraLabels: Record<string, string>,
): SpecSettings {
  return {
    defaultResources: config.defaultResources,
    nofile: config.nofile,
    cpuPeriodUs: config.cpuPeriodUs,
    aliveApiUrl: config.aliveApiUrl,
    nodePath: config.nodePath,
    trustedDirs: config.trustedDirs,
    extraLabels,
  };
}

export function resolveResources(params: WorkspaceParams, defaults: ResourceLimits): ResourceLimits {
  return {
    memoryMb: params.resources?.memoryMb ?? defaults.memoryMb,
    cpus: params.resources?.cpus ?? defaults.cpus,
    pids: params.resources?.pids ?? defaults.pids,
  };
}

/**
 * The env the container itself carries (no secrets: the model key never enters a container, and
 * codex's per-turn credential reaches its own exec only). Network tools find the egress proxy
 * through the proxy variables; ALIVE_API_URL is the loopback end of Alive's API.
 */
export function containerEnv(
  params: WorkspaceParams,
  context: Pick<SpecContext, "aliveApiUrl" | "nodePath">,
): Record<string, string> {
  return {
    ...buildCodexEnv({
      workspaceId: params.workspaceId,
      userId: params.userId,
      workspacePath: params.workspacePath,
      ...(params.git === undefined ? {} : { git: params.git }),
      aliveApiUrl: context.aliveApiUrl === null ? null : insideApiUrl(context.aliveApiUrl),
      nodePath: context.nodePath,
    }),
    ...proxyEnv(),
  };
}

/** What goes into the spec hash and the params label: everything needed to re-create the container. */
export function storedParams(params: WorkspaceParams): WorkspaceParams {
  const stored: WorkspaceParams = {
    workspaceId: params.workspaceId,
    userId: params.userId,
    uid: params.uid,
    gid: params.gid,
    workspacePath: params.workspacePath,
  };
  if (params.git !== undefined) stored.git = params.git;
  if (params.network !== undefined) stored.network = params.network;
  if (params.resources !== undefined) stored.resources = params.resources;
  if (params.egress !== undefined) stored.egress = params.egress;
  if (params.runtime !== undefined) stored.runtime = params.runtime;
  return stored;
}

export interface WorkspaceSpec {
  name: string;
  hash: string;
  options: ContainerSpec;
}

export function buildWorkspaceSpec(
  params: WorkspaceParams,
  paths: WorkspacePaths,
  context: SpecContext,
): WorkspaceSpec {
  const resources = resolveResources(params, context.defaultResources);
  const name = containerName(params.workspaceId);
  const mounts = [
    { Type: "bind" as const, Source: params.workspacePath, Target: params.workspacePath },
    { Type: "bind" as const, Source: paths.home, Target: CONTAINER_HOME },
    { Type: "bind" as const, Source: paths.tmp, Target: CONTAINER_TMPDIR },
    { Type: "bind" as const, Source: paths.run, Target: CONTAINER_RUN_DIR, ReadOnly: true },
    ...SHELL_RC_TARGETS.map((file) => ({
      Type: "bind" as const,
      Source: paths.shellRc,
      Target: `${CONTAINER_HOME}/${file}`,
      ReadOnly: true,
    })),
    ...context.trustedDirs.map((dir) => ({ Type: "bind" as const, Source: dir, Target: dir, ReadOnly: true })),
  ];
  const main = containerMainCommand(context.aliveApiUrl !== null);
  const options: ContainerSpec = {
    name,
    Image: context.image,
    Entrypoint: main.slice(0, 1),
    Cmd: main.slice(1),
    User: `${params.uid}:${params.gid}`,
    Env: toDockerEnv(containerEnv(params, context)),
    WorkingDir: params.workspacePath,
    StopTimeout: 5,
    Labels: {
      ...context.extraLabels,
      [Labels.managed]: "true",
      [Labels.stateDir]: paths.stateDir,
      [Labels.workspaceId]: params.workspaceId,
      [Labels.userId]: params.userId,
      [Labels.uid]: String(params.uid),
      [Labels.gid]: String(params.gid),
      [Labels.workspacePath]: params.workspacePath,
      [Labels.params]: JSON.stringify(storedParams(params)),
      [Labels.runtime]: context.runtime,
    },
    HostConfig: {
      Init: true,
      Mounts: mounts,
      ReadonlyRootfs: true,
      Tmpfs: { "/var/tmp": "rw,nosuid,nodev,size=64m" },
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges:true"],
      // Under gVisor the cgroup counts the sandbox's host tasks, not the tenant's (runtimes.ts).
      PidsLimit: hostPidsLimit(context.runtime, resources.pids),
      Memory: resources.memoryMb * 1024 * 1024,
      MemorySwap: resources.memoryMb * 1024 * 1024,
      // The CPU limit as quota over a period the operator chooses (ALIVE_CODEX_CPU_PERIOD), not
      // NanoCpus, which the engine enforces over 100 ms and which throttles codex's start-up.
      CpuPeriod: context.cpuPeriodUs,
      CpuQuota: Math.max(1000, Math.round(resources.cpus * context.cpuPeriodUs)),
      // No core dumps, soft and hard (the tenant cannot raise it): the host's core_pattern decides
      // where a core goes, not the workspace. A file pattern writes none at 0; a pipe to a host crash
      // handler (systemd-coredump, apport) runs on the host, is given this limit (%c) and, for
      // systemd-coredump, keeps no core, so a crash loop of the tenant's cannot fill the host's disk.
      Ulimits: [
        { Name: "nofile", Soft: context.nofile, Hard: context.nofile },
        { Name: "core", Soft: 0, Hard: 0 },
      ],
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
      // No network of its own: only loopback, no route. Everything out goes through the sidecar's
      // sockets (egress/workspace-endpoints.ts), whatever params.network says.
      NetworkMode: "none",
      IpcMode: "private",
      RestartPolicy: { Name: "no" },
      Runtime: context.runtime,
    },
  };
  const hash = hashSpec(options);
  (options.Labels as Record<string, string>)[Labels.specHash] = hash;
  return { name, hash, options };
}

/**
 * The hash of a container's create options (before the hash label is added). It covers every
 * option, so any change to the spec (a new limit, say) gives every existing container a stale
 * hash: the next ensure of an idle workspace replaces its container (manager.ts).
 */
export function hashSpec(options: ContainerSpec): string {
  return createHash("sha256").update(JSON.stringify(options)).digest("hex").slice(0, 16);
}
