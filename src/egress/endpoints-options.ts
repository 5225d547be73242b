/** What WorkspaceEndpoints is given: the model API and its key, the callbacks the metrics hang on, the bounds; and each workspace's network. */
import type { Logger } from "../log.js";
import type { TurnCredentials } from "../model-proxy/credentials.js";
import type { ModelProxyOptions, ProxyRefusal, TokenUsage, UpstreamFailure } from "../model-proxy/server.js";
import type { NetLookup } from "../model-proxy/upstream-lookup.js";
import type { LogLimiter } from "../shared/log-limiter.js";
import type { AddressSet } from "../policy/addresses.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { InternalDestination } from "../policy/internal-destinations.js";
import type { ConnectionLimitsOptions, LimitReason, SocketKind, UpstreamKind } from "./connection-limits.js";
import type { RefusalReason } from "./destination.js";
import type { NameResolver } from "./resolver.js";
import type { ApiTokens } from "./api-tokens.js";
import type { SecretBindings } from "./secret-bindings.js";
import type { TunnelBroker } from "./tunnel-broker.js";
import type { CutReason } from "./upstream-watch.js";

/** What a model credential refers to. */
export interface TurnRef {
  workspaceId: string;
  turnId: string;
}

export interface WorkspaceEndpointsOptions {
  log: Logger;
  /** The model API the sidecar forwards to (OPENAI_BASE_URL, else OpenAI's). */
  modelUpstream: string;
  /** The real key; it never leaves the sidecar except towards modelUpstream. */
  apiKey: string | null;
  aliveApiUrl: string | null;
  /** Alive's API token per workspace, added by the API proxy (api-tokens.ts). */
  apiTokens?: ApiTokens;
  /** The secret bindings in force: a CONNECT to a bound host is intercepted (secret-bindings.ts)... */
  secrets?: SecretBindings;
  /** ...by the broker (tunnel-broker.ts); without one, every tunnel is plain. */
  broker?: TunnelBroker;
  internal: readonly InternalDestination[];
  credentials: TurnCredentials<TurnRef>;
  /** Asked before each model request is forwarded; a refusal is answered instead (a spent token budget). */
  admit?: (ref: TurnRef) => ProxyRefusal | null;
  onUsage?: (ref: TurnRef, usage: TokenUsage) => void;
  /** Called for each model request forwarded (the metrics). */
  onModelRequest?: (ref: TurnRef) => void;
  onModelUnreachable?: (ref: TurnRef, failure: UpstreamFailure) => void;
  onRefusal?: (workspaceId: string, host: string, port: number, reason: RefusalReason) => void;
  /** The operator's model proxy limits and lists (allowed paths, hosted tools, body size, concurrency, rate, organisation, project). */
  modelPolicy?: Pick<
    ModelProxyOptions<TurnRef>,
    "extraRoutes" | "hostedTools" | "maxBodyBytes" | "concurrencyPerTurn" | "ratePerMinute" | "organization" | "project"
  >;
  /** Called for each request the model proxy answered itself (the metrics). */
  onModelRefusal?: (ref: TurnRef | null, reason: string) => void;
  /** The sidecar's resolver for the egress proxies: each workspace's lookups under its own bound. Default: one made here. */
  resolver?: NameResolver;
  /** The model API's addresses, resolved apart from the workspaces' lookups (UpstreamLookup.lookup). Default: getaddrinfo. */
  modelLookup?: NetLookup;
  /** The operator's further addresses of the host (ALIVE_CODEX_HOST_ADDRESSES). */
  operatorHostAddresses?: AddressSet;
  /** Rate-limits the proxies' log lines per workspace. Default: one made here. */
  logLimiter?: LogLimiter;
  /** Connections per workspace and socket, and in all; the descriptor guard. Default: 256 and 8192, no guard. */
  connectionLimits?: Pick<ConnectionLimitsOptions, "perWorkspace" | "total" | "overloaded">;
  /** Called for each connection or request refused for a bound (the metrics). */
  onLimitRefusal?: (kind: SocketKind | UpstreamKind, reason: LimitReason) => void;
  /** The egress proxy's tunnels and forwarded requests: cut after this long idle, and once this old. Default 5 min and 1 h. */
  tunnelIdleTimeoutMs?: number;
  tunnelMaxLifetimeMs?: number;
  /** Called for each tunnel or forwarded request cut (the metrics). */
  onUpstreamCut?: (kind: "tunnel" | "request", reason: CutReason) => void;
  /** Ports the egress proxy connects to; an internal destination keeps its own. Default 443 and 80. */
  egressPorts?: readonly number[];
}

export interface WorkspaceNet {
  workspaceId: string;
  /** The host directory the sockets go in (mounted read-only inside at CONTAINER_NET_DIR). */
  dir: string;
  uid: number;
  gid: number;
  /** The egress policy in force, read for every request. */
  policy: () => EgressPolicy;
}
