/** Wires the sidecar's parts from a validated config and passes them in: no module singletons. */
import { promises as fs } from "node:fs";
import type { SidecarConfig } from "./config.js";
import { errorMessage } from "./errors.js";
import type { Logger } from "./log.js";
import { prepareBridges } from "./codex/bridge.js";
import { Launchers } from "./codex/launcher.js";
import type { TurnReport } from "./turns/turn-execution.js";
import { Turns, turnSettingsFromConfig } from "./turns/turns.js";
import { LateTurns, modelProxyTurnHooks } from "./turns/turns-port.js";
import { DockerEngine } from "./docker/docker-engine.js";
import { createDockerClient, type Docker } from "./docker/engine.js";
import type { EnginePort } from "./docker/engine-port.js";
import type { OrphanSweepReport } from "./codex/orphan-sweep.js";
import { EngineStatus } from "./docker/engine-status.js";
import { checkSelfMounts } from "./docker/self-mounts.js";
import { openRuntime } from "./docker/runtime-codex.js";
import { DescriptorGuard, countOpenDescriptors, raiseNofileLimit } from "./shared/descriptor-guard.js";
import { readPackageVersion } from "./version.js";
import { OPENAI_API_BASE_URL } from "./egress/container-net.js";
import { WorkspaceEndpoints, type TurnRef } from "./egress/workspace-endpoints.js";
import { NameResolver } from "./egress/resolver.js";
import { TurnCredentials } from "./model-proxy/credentials.js";
import { UpstreamLookup } from "./model-proxy/upstream-lookup.js";
import { startMetricsServer, type MetricsServer } from "./metrics/metrics-server.js";
import { SidecarMetrics } from "./metrics/sidecar-metrics.js";
import { WorkspaceDisks } from "./workspace/disk-image.js";
import { WorkspaceManager } from "./workspace/manager.js";
import { openTurnJournal } from "./journal/open-journal.js";
import { TurnRecords } from "./turns/turn-records.js";
import { claimStateFormat } from "./state-format.js";
import { resumeLeftTurns } from "./turns/turn-adoption.js";
import { specContextFromConfig } from "./workspace/spec.js";
import { WorkspaceRuntimes } from "./workspace/runtimes.js";
import { startWorkspaces } from "./workspace/start-workspaces.js";
import type { SidecarService } from "./service.js";
import { sidecarService } from "./wiring/service.js";
import { openBrokering } from "./wiring/brokering.js";

export interface RunningSidecar {
  service: SidecarService;
  workspaces: WorkspaceManager;
  /** Every turn: run, attach, get, list, cancel, and the counts health reports. */
  turns: Turns;
  /** The start-up sweep of turns an earlier sidecar left running (null while the engine was unreachable). */
  orphanSweep: OrphanSweepReport | null;
  /** The engine's client, for what builds and checks images (docker/) and for tests. */
  docker: Docker;
  /** The engine as the workspaces and turns reach it. */
  engine: EnginePort;
  /** Where Prometheus metrics are served (ALIVE_CODEX_METRICS_LISTEN), or null. */
  metricsAddress: { host: string; port: number } | null;
  /** Graceful stop: running turns get `graceMs` to finish, then are cancelled; containers stay for re-adoption. */
  close(graceMs: number): Promise<void>;
  /** Stop for an upgrade: running turns are left in their containers (journals flushed) for the next sidecar; resolves with how many. */
  leave(): Promise<number>;
}

export interface StartSidecarOptions {
  /** Labels added to every container and network (tests label theirs with a run id). */
  extraLabels?: Record<string, string>;
  /** Receives image build output; default: the logger. */
  onImageProgress?: (line: string) => void;
}

/** How long a stop that leaves turns running waits for each to let go (its journal flushed). */
const LEAVE_WITHIN_MS = 1000;

/** The package's version (package.json). */
export const sidecarVersion = readPackageVersion;

export async function startSidecar(
  config: SidecarConfig,
  log: Logger,
  options: StartSidecarOptions = {},
): Promise<RunningSidecar> {
  if (config.network !== null) {
    log.warn(
      "ALIVE_CODEX_NETWORK (--network) is deprecated and ignored: workspace containers have no network of their own and reach out only through the sidecar (docs/security.md); remove the setting",
      { network: config.network },
    );
  }
  // Every tenant's connections are this process's descriptors: as many as the host allows, and
  // new work refused (not failed halfway) before they run out.
  const nofile = await raiseNofileLimit(log);
  const descriptors = new DescriptorGuard({ limit: nofile?.soft ?? Infinity, count: countOpenDescriptors });
  const docker = createDockerClient(config.dockerHost);
  const engine = new DockerEngine(docker);
  // In a container, the state dir and workspace roots must be mounted at their host paths (bind
  // sources are host paths): refuse before anything is written to a wrongly mounted state dir.
  const self = await checkSelfMounts(
    docker,
    { stateDir: config.stateDir, workspaceRoots: config.workspaceRoots },
    { log },
  );
  await fs.mkdir(config.stateDir, { recursive: true, mode: 0o711 });
  await claimStateFormat(config.stateDir, sidecarVersion(), log);
  const bridges = await prepareBridges(config.stateDir);
  // The image and its codex (refused if the SDK cannot drive it); its flags go to every codex exec.
  const { image, codex } = await openRuntime(docker, config, {
    labels: { ...config.extraLabels, ...options.extraLabels },
    log,
    ...(options.onImageProgress ? { onProgress: options.onImageProgress } : {}),
  });
  // Turns an earlier sidecar left running: adopted or ended once the workspaces are started (below).
  const { journal, unfinished } = await openTurnJournal(config, log);
  const { records, saved: savedTurns } = await TurnRecords.openIn(config.stateDir, log);
  // The model key stays here: codex in a workspace gets a per-turn credential that only the
  // workspace's model proxy accepts (egress/workspace-endpoints.ts).
  const credentials = new TurnCredentials<TurnRef>();
  // Other credentials stay here too: the egress proxy brokers them (wiring/brokering.ts).
  const brokering = await openBrokering(config, () => metrics?.countBrokeredRequest());
  // The turns are built last (they run in the workspaces, which are told about the proxies): what
  // is built before them and asks them things is handed lateTurns, bound once the turns exist.
  const lateTurns = new LateTurns();
  // Metrics only when served; their gauges read the workspaces and turns when scraped.
  const metrics: SidecarMetrics | null = config.metricsListen
    ? new SidecarMetrics({
        workspaceStates: (): string[] => workspaces.list().map((w) => w.state),
        runningTurns: () => lateTurns.running,
        detachedTurns: () => lateTurns.detached,
        proxyConnections: () => network.connectionTotals(),
      })
    : null;
  // Name resolution: the workspaces' egress lookups share one resolver, a few slots per workspace;
  // the model API's name has a resolver of its own and is kept by its TTL (egress/resolver.ts).
  const dns = {
    timeoutMs: config.dnsTimeoutMs,
    hostsFile: config.hostsFile,
    ...(config.dnsServers ? { servers: config.dnsServers } : {}),
  };
  const resolver = new NameResolver({
    ...dns,
    perWorkspace: config.dnsPerWorkspace,
    total: config.dnsMax,
    onBusy: () => metrics?.countDnsRefusal("busy"),
    onTimeout: () => metrics?.countDnsRefusal("timeout"),
  });
  const modelLookup = new UpstreamLookup({ resolver: dns, log });
  const network = new WorkspaceEndpoints({
    log,
    resolver,
    modelLookup: modelLookup.lookup,
    operatorHostAddresses: config.hostAddresses,
    modelUpstream: config.openaiBaseUrl ?? OPENAI_API_BASE_URL,
    apiKey: config.codexApiKey,
    aliveApiUrl: config.aliveApiUrl,
    secrets: brokering.secrets,
    apiTokens: brokering.apiTokens,
    broker: brokering.broker,
    internal: config.internalDestinations,
    credentials,
    ...modelProxyTurnHooks(lateTurns, log, metrics),
    onModelRequest: () => metrics?.countModelRequest(),
    onModelRefusal: (_ref, reason) => metrics?.countModelRefusal(reason),
    modelPolicy: {
      extraRoutes: config.modelPaths,
      hostedTools: config.modelHostedTools,
      maxBodyBytes: config.modelMaxBodyMb * 1024 * 1024,
      concurrencyPerTurn: config.modelConcurrency,
      ratePerMinute: config.modelRatePerMinute,
      organization: config.openaiOrganization,
      project: config.openaiProject,
    },
    onRefusal: (_workspaceId, _host, _port, reason) => metrics?.countEgressRefusal(reason),
    egressPorts: config.egressPorts,
    connectionLimits: {
      perWorkspace: config.proxyConnectionsPerWorkspace,
      total: config.proxyConnectionsTotal,
      overloaded: (held) => descriptors.check(held),
    },
    onLimitRefusal: (kind, reason) => metrics?.countLimitRefusal(kind, reason),
    tunnelIdleTimeoutMs: config.tunnelIdleTimeoutMs,
    tunnelMaxLifetimeMs: config.tunnelMaxLifetimeMs,
    onUpstreamCut: (kind, reason) => metrics?.countEgressCut(kind, reason),
  });
  // Refuses to start when the operator asked for disk limits this host cannot enforce.
  // In a container, a disk reaches the engine only through a shared bind of the state dir.
  const disks = await WorkspaceDisks.open({
    stateDir: config.stateDir,
    log,
    enforcement: config.diskEnforcement,
    defaults: config.defaultDisk,
    max: config.maxDisk,
    stateDirPropagation: self.stateDirPropagation,
  });
  const workspaces = new WorkspaceManager({
    engine,
    log,
    image,
    stateDir: config.stateDir,
    maxWorkspaces: config.maxWorkspaces,
    idleTimeoutMs: config.idleTimeoutMs,
    // With no pause there is no paused period to stop after: 0 keeps meaning "never" for both.
    stopTimeoutMs: config.idleTimeoutMs > 0 ? config.stopTimeoutMs : 0,
    spec: specContextFromConfig(config, { ...config.extraLabels, ...options.extraLabels }),
    runtimes: new WorkspaceRuntimes(engine, { defaultRuntime: config.runtime, allowed: config.runtimes }),
    defaultEgress: config.defaultEgress,
    network,
    disks,
    ...(metrics ? { onEnsured: (kind: "cold" | "warm", seconds: number) => metrics.observeEnsure(kind, seconds) } : {}),
  });
  const stopRetrying = await startWorkspaces(workspaces, log);
  const turns = new Turns({
    ...turnSettingsFromConfig(config),
    engine,
    launchers: new Launchers(engine, { codexFlags: codex.flags }),
    log,
    workspaces,
    journal,
    records,
    sidecarVersion: sidecarVersion(),
    ...bridges,
    ...brokering.turns,
    credentials,
    // A turn that narrows its workspace's egress starts with none of the tunnels opened before it.
    onEgressNarrowed: (workspaceId: string) => network.closeTunnels(workspaceId),
    ...(metrics
      ? {
          onTurnFinished: (report: TurnReport) => metrics.observeTurn(report),
          onSandboxStall: () => metrics.countSandboxStall(),
        }
      : {}),
  });
  lateTurns.bind(turns);
  const version = sidecarVersion();
  // The sockets under each run dir are served again (startWorkspaces): now the turns that lived
  // through the gap are adopted, and every other workspace is swept of what earlier turns left.
  const orphanSweep = await resumeLeftTurns(
    { journal, records, workspaces, engine, turns, log, onOutcome: (outcome) => metrics?.countLeftTurn(outcome) },
    unfinished,
    savedTurns,
  );

  const engineStatus = new EngineStatus(engine, docker, image, codex);

  const service = sidecarService({
    version,
    imageRef: config.image,
    engineStatus,
    codex,
    workspaces,
    turns,
    disks,
    descriptors,
    network,
    secrets: brokering.secrets,
    secretRules: {
      internal: config.internalDestinations,
      ports: config.egressPorts,
      defaultEgress: config.defaultEgress,
    },
  });

  let metricsServer: MetricsServer | null = null;
  try {
    if (metrics && config.metricsListen)
      metricsServer = await startMetricsServer(config.metricsListen, metrics.registry, log);
  } catch (error) {
    stopRetrying();
    journal.close();
    await turns.shutdown(0);
    await workspaces.close();
    throw new Error(
      `cannot serve metrics on ${config.metricsListen?.host}:${config.metricsListen?.port}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  // The turns go first (drained, or left running with their journals flushed), then the rest.
  const stop = async <T>(turnsStop: () => Promise<T>): Promise<T> => {
    stopRetrying();
    const outcome = await turnsStop();
    journal.close();
    await workspaces.close();
    await metricsServer?.close();
    return outcome;
  };
  return {
    service,
    workspaces,
    turns,
    orphanSweep,
    docker,
    engine,
    metricsAddress: metricsServer?.address ?? null,
    close: (graceMs) => stop(() => turns.shutdown(graceMs)).then(() => undefined),
    leave: () => stop(() => turns.leaveRunning(LEAVE_WITHIN_MS)),
  };
}
