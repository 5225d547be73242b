/** What a workspace's egress proxy is given: its policy, its resolver, its bounds and its callbacks. */
import type { Logger } from "../log.js";
import type { LogLimiter } from "../shared/log-limiter.js";
import type { AddressSet } from "../policy/addresses.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { InternalDestination } from "../policy/internal-destinations.js";
import type { Admission } from "./connection-limits.js";
import type { Duplex } from "node:stream";
import type { RefusalReason, Resolver, Target } from "./destination.js";
import type { CutReason } from "./upstream-watch.js";

export interface EgressProxyOptions {
  /** Read for every request: the workspace's policy can change while the proxy runs. */
  policy: () => EgressPolicy;
  internal?: readonly InternalDestination[];
  /** The workspace's share of the sidecar's resolver (NameResolver.forWorkspace). Default: a resolver of its own, bounded by dnsTimeoutMs. */
  resolve?: Resolver;
  dnsTimeoutMs?: number;
  /** The host's own addresses. Default: os.networkInterfaces(), read for every request. */
  hostAddresses?: () => readonly string[];
  /** The operator's further addresses of the host (ALIVE_CODEX_HOST_ADDRESSES), refused as host_address. */
  operatorHostAddresses?: AddressSet;
  /** Per attempted address. Default 10 s. */
  connectTimeoutMs?: number;
  /** Called for every refusal (for counting); its log line is rate-limited. */
  onRefusal?: (host: string, port: number, reason: RefusalReason) => void;
  /** Ports connected to, for CONNECT and http:// alike; an internal destination keeps its own. Default 443 and 80. */
  allowedPorts?: readonly number[];
  /** Asked before a tunnel or forwarded request opens its upstream connection; a refusal is answered instead. Default: no bound. */
  admitUpstream?: (kind: UpstreamKind) => Admission;
  /** A tunnel or forwarded request is cut after this long without a byte either way. Default 5 min. */
  idleTimeoutMs?: number;
  /** ... and once this old. Default 1 h. */
  maxLifetimeMs?: number;
  /** Called when a tunnel or forwarded request is cut (idle, lifetime, or closeUpstreams()). */
  onCut?: (kind: UpstreamKind, reason: CutReason) => void;
  log: Logger;
  /** Rate-limits the log lines a client causes (refused, lookup failed, connect failed), under `logKey`. Default: one of its own. */
  logLimiter?: LogLimiter;
  /** The key of this proxy's lines in logLimiter (the workspace). Default "". */
  logKey?: string;
  /**
   * Asked once a CONNECT's upstream is connected: for a host with a secret binding, what takes the
   * tunnel over (TLS terminated, the binding applied: broker/intercept.ts) instead of piping its
   * bytes; null for every other host. Default: none is intercepted.
   */
  intercept?: (target: Target) => Promise<TunnelTakeover | null>;
}

/** Takes over a tunnel after its 200: the client's and upstream's sockets, and what the client sent already. */
export type TunnelTakeover = (client: Duplex, upstream: Duplex, head: Buffer) => void;

/** What holds an upstream connection of the egress proxy. */
export type UpstreamKind = "tunnel" | "request";
