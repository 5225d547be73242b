/**
 * The network of a workspace. Its container has none of its own (Docker network "none": only
 * loopback, no route anywhere). Inside, the container's main process runs forwarders (socat) that
 * listen on loopback ports and pass each connection to a Unix socket the sidecar serves in the
 * workspace's run dir (read-only inside at /run/alive/net; container-net.ts has the inside end):
 *   proxy.sock  the egress proxy, HTTP_PROXY/HTTPS_PROXY inside (policy per workspace)
 *   model.sock  the model proxy, codex's base URL: a per-turn credential in, the real key out
 *   api.sock    Alive's API (ALIVE_API_URL inside), when the operator set one
 * So nothing leaves a workspace but through these servers, under runc and gVisor alike, with no
 * bridge and no host firewall rule. Each socket belongs to the workspace's uid (mode 0600): no
 * other host user can use it. A read-only mount does not stop connect(), so each socket's
 * connections are bounded per workspace and across the sidecar (connection-limits.ts).
 */
import { promises as fs } from "node:fs";
import type { Server } from "node:http";
import path from "node:path";
import { errorMessage } from "../errors.js";
import { createModelProxy } from "../model-proxy/server.js";
import { LogLimiter } from "../shared/log-limiter.js";
import { createApiProxy } from "./api-proxy.js";
import {
  ConnectionLimits,
  DEFAULT_CONNECTIONS_PER_WORKSPACE,
  DEFAULT_CONNECTIONS_TOTAL,
  boundConnections,
  type SocketKind,
  type UpstreamKind,
  type WorkspaceConnections,
} from "./connection-limits.js";
import { NET_SOCKETS } from "./container-net.js";
import type { TurnRef, WorkspaceEndpointsOptions, WorkspaceNet } from "./endpoints-options.js";
import { createEgressProxy, type EgressProxyServer } from "./http-proxy.js";
import { closeServer, listenOwned } from "./owned-socket.js";
import { NameResolver } from "./resolver.js";
import type { Logger } from "../log.js";
import type { Target } from "./destination.js";
import type { TunnelTakeover } from "./proxy-options.js";

export type { TurnRef, WorkspaceEndpointsOptions, WorkspaceNet } from "./endpoints-options.js";

interface Endpoints {
  servers: Server[];
  egress: EgressProxyServer;
  /** Drop each socket's refused connections still held for their answer. */
  dropRefused: Array<() => void>;
}

export class WorkspaceEndpoints {
  private readonly open = new Map<string, Promise<Endpoints>>();
  /** The same, once served: closeTunnels() answers at once. */
  private readonly served = new Map<string, Endpoints>();
  /** Closes in flight: a server's close unlinks its socket path, so a new one binds only after. */
  private readonly closing = new Map<string, Promise<void>>();
  private readonly refused = new Map<string, number>();
  private readonly logLimiter: LogLimiter;
  private readonly resolver: NameResolver;
  private readonly limits: ConnectionLimits;

  constructor(private readonly options: WorkspaceEndpointsOptions) {
    this.logLimiter = options.logLimiter ?? new LogLimiter();
    this.resolver = options.resolver ?? new NameResolver();
    this.limits = new ConnectionLimits({
      perWorkspace: options.connectionLimits?.perWorkspace ?? DEFAULT_CONNECTIONS_PER_WORKSPACE,
      total: options.connectionLimits?.total ?? DEFAULT_CONNECTIONS_TOTAL,
      ...(options.connectionLimits?.overloaded ? { overloaded: options.connectionLimits.overloaded } : {}),
      ...(options.onLimitRefusal ? { onRefused: options.onLimitRefusal } : {}),
    });
  }

  /** Serves the workspace's sockets unless they are served already (idempotent; a sidecar restart re-creates them). */
  ensure(net: WorkspaceNet): Promise<void> {
    let endpoints = this.open.get(net.workspaceId);
    if (!endpoints) {
      const closing = this.closing.get(net.workspaceId) ?? Promise.resolve();
      endpoints = closing.then(() => this.start(net));
      this.open.set(net.workspaceId, endpoints);
      endpoints.catch(() => this.open.delete(net.workspaceId));
    }
    return endpoints.then(() => undefined);
  }

  /** Egress refusals of the workspace since its sockets were opened. */
  refusals(workspaceId: string): number {
    return this.refused.get(workspaceId) ?? 0;
  }

  /** The workspace's connections now, and those refused for a bound or cut since its sockets were opened. */
  connections(workspaceId: string): WorkspaceConnections {
    return this.limits.counts(workspaceId);
  }

  /** Open connections and requests across every workspace, by kind (the metrics). */
  connectionTotals(): Record<SocketKind | UpstreamKind, number> {
    return { ...this.limits.totals() };
  }

  /** Descriptors the proxies hold now (accepted connections and upstream connections), for the descriptor guard. */
  get heldConnections(): number {
    return this.limits.held;
  }

  /**
   * Ends the workspace's open CONNECT tunnels and forwarded http:// requests, both ends, and those
   * being connected (not its model or API connections); returns how many were open. Called when a
   * turn narrows the workspace's egress: nothing opened under the wider policy outlives it.
   */
  closeTunnels(workspaceId: string): number {
    const endpoints = this.served.get(workspaceId);
    return endpoints === undefined ? 0 : endpoints.egress.closeUpstreams();
  }

  /** The workspace's own Alive API token (workspace.ensure `aliveApiToken`), over the operator's. */
  setApiToken(workspaceId: string, token: string): void {
    this.options.apiTokens?.set(workspaceId, token);
  }

  /** Stops serving the workspace (it was removed): open tunnels and streams end. */
  close(workspaceId: string): Promise<void> {
    const endpoints = this.open.get(workspaceId);
    this.open.delete(workspaceId);
    this.served.delete(workspaceId);
    this.refused.delete(workspaceId);
    this.limits.forget(workspaceId);
    this.options.apiTokens?.forget(workspaceId);
    this.options.secrets?.forget(workspaceId);
    this.options.credentials.revokeWhere((ref) => ref.workspaceId === workspaceId);
    if (!endpoints) return this.closing.get(workspaceId) ?? Promise.resolve();
    const done = endpoints
      .catch(() => null)
      .then(async (open) => {
        if (!open) return;
        for (const drop of open.dropRefused) drop();
        await Promise.all(open.servers.map(closeServer));
      })
      .finally(() => {
        if (this.closing.get(workspaceId) === done) this.closing.delete(workspaceId);
      });
    this.closing.set(workspaceId, done);
    return done;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.open.keys()].map((workspaceId) => this.close(workspaceId)));
  }

  /** A CONNECT to a host the workspace has a secret binding for is taken over by the broker. */
  private interceptor(workspaceId: string, log: Logger): (target: Target) => Promise<TunnelTakeover | null> {
    const { secrets, broker } = this.options;
    return async (target) => {
      const binding = secrets?.bindingFor(workspaceId, target.host, target.port) ?? null;
      return binding && broker ? broker.takeover(target, binding, log) : null;
    };
  }

  private async start(net: WorkspaceNet): Promise<Endpoints> {
    const { options } = this;
    const log = options.log.child({ workspaceId: net.workspaceId });
    const { limits } = this;
    const egress = createEgressProxy({
      policy: net.policy,
      internal: options.internal,
      log,
      // The workspace id keys its lookup slots and its log lines' rate.
      resolve: this.resolver.forWorkspace(net.workspaceId),
      ...(options.operatorHostAddresses ? { operatorHostAddresses: options.operatorHostAddresses } : {}),
      logLimiter: this.logLimiter,
      logKey: net.workspaceId,
      onRefusal: (host, port, reason) => {
        this.refused.set(net.workspaceId, (this.refused.get(net.workspaceId) ?? 0) + 1);
        options.onRefusal?.(net.workspaceId, host, port, reason);
      },
      admitUpstream: (kind) => limits.admitUpstream(net.workspaceId, kind),
      onCut: (kind, reason) => {
        limits.noteCut(net.workspaceId);
        options.onUpstreamCut?.(kind, reason);
      },
      ...(options.tunnelIdleTimeoutMs !== undefined ? { idleTimeoutMs: options.tunnelIdleTimeoutMs } : {}),
      ...(options.tunnelMaxLifetimeMs !== undefined ? { maxLifetimeMs: options.tunnelMaxLifetimeMs } : {}),
      ...(options.egressPorts !== undefined ? { allowedPorts: options.egressPorts } : {}),
      ...(options.broker && options.secrets ? { intercept: this.interceptor(net.workspaceId, log) } : {}),
    });
    const endpoints: Endpoints = { servers: [], egress, dropRefused: [] };
    const model = createModelProxy<TurnRef>({
      upstreamBaseUrl: options.modelUpstream,
      apiKey: options.apiKey,
      // A credential works only through its own workspace's socket.
      authorize: (token) => {
        const ref = options.credentials.resolve(token);
        return ref !== null && ref.workspaceId === net.workspaceId ? ref : null;
      },
      logger: log,
      logFields: (ref) => ({ turnId: ref.turnId }),
      ...(options.modelLookup ? { lookup: options.modelLookup } : {}),
      ...options.modelPolicy,
      // The body policy follows the egress in force (a turn without network access narrows it).
      egress: () => net.policy(),
      turnKey: (ref) => ref.turnId,
      workspaceKey: (ref) => ref.workspaceId,
      ...(options.onModelRefusal ? { onRefusal: options.onModelRefusal } : {}),
      ...(options.admit ? { admit: options.admit } : {}),
      ...(options.onUsage ? { onUsage: options.onUsage } : {}),
      ...(options.onModelRequest ? { onRequest: options.onModelRequest } : {}),
      ...(options.onModelUnreachable ? { onUpstreamError: options.onModelUnreachable } : {}),
    });
    const api = options.aliveApiUrl
      ? createApiProxy({
          target: options.aliveApiUrl,
          workspaceId: net.workspaceId,
          log,
          logLimiter: this.logLimiter,
          logKey: net.workspaceId,
          admitRequest: () => limits.admitUpstream(net.workspaceId, "apiRequest"),
          ...(options.apiTokens ? { credential: () => options.apiTokens!.credential(net.workspaceId) } : {}),
        })
      : null;
    const servers: Array<[SocketKind, Server]> = [
      ["proxy", egress],
      ["model", model],
      ...(api ? [["api", api] as [SocketKind, Server]] : []),
    ];
    await fs.mkdir(net.dir, { recursive: true, mode: 0o755 });
    try {
      for (const [kind, server] of servers) {
        endpoints.dropRefused.push(boundConnections(server, limits, net.workspaceId, kind));
        await listenOwned(server, path.join(net.dir, NET_SOCKETS[kind]), net.uid, net.gid);
        endpoints.servers.push(server);
      }
    } catch (error) {
      for (const drop of endpoints.dropRefused) drop();
      await Promise.all(endpoints.servers.map(closeServer));
      throw new Error(
        `could not serve the network sockets of workspace ${net.workspaceId} in ${net.dir}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    // Unless the workspace was closed (or closed and served again) meanwhile.
    if (this.open.has(net.workspaceId)) this.served.set(net.workspaceId, endpoints);
    return endpoints;
  }
}
