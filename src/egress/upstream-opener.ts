/**
 * How the egress proxy opens an upstream connection for a tunnel or a forwarded request, and keeps it
 * bounded: the port must be the operator's, the workspace's connection bounds must admit it
 * (connection-limits.ts), the destination must pass the policy (destination.ts) and connect; once
 * open it is cut when it idles, outlives its maximum (upstream-watch.ts) or the egress narrows.
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { LogLimiter, limitedLog } from "../shared/log-limiter.js";
import { DEFAULT_EGRESS_PORTS, isPortAllowed } from "../policy/internal-destinations.js";
import type { Admission } from "./connection-limits.js";
import { ConnectFailure, connectToAny, resolveDestination, type RefusalReason, type Target } from "./destination.js";
import { hostAddressesFromInterfaces } from "./host-addresses.js";
import type { EgressProxyOptions, UpstreamKind } from "./proxy-options.js";
import { ERROR_HEADER, REFUSED_HEADER, type Failure } from "./proxy-replies.js";
import type { EgressProxyServer } from "./proxy-server.js";
import { NameResolver } from "./resolver.js";
import { DEFAULT_TUNNEL_IDLE_MS, DEFAULT_TUNNEL_MAX_MS, watchUpstream, type CutReason } from "./upstream-watch.js";

export interface UpstreamOpener {
  /**
   * Admits, then opens an upstream connection for a tunnel or a forwarded request. The slot is
   * held until that connection closes; one connected across a closeUpstreams() is dropped.
   */
  openUpstream(kind: UpstreamKind, target: Target, signal?: AbortSignal): Promise<Duplex | Failure>;
  /**
   * Cuts an upstream connection, with `ends`, when it idles or outlives its maximum, or when
   * closeUpstreams() is called; counted. Released when the upstream closes.
   */
  superviseUpstream(
    kind: UpstreamKind,
    upstream: Duplex,
    watched: readonly Duplex[],
    ends: ReadonlyArray<{ destroy(): void }>,
  ): void;
}

export function createUpstreamOpener(options: EgressProxyOptions, server: EgressProxyServer): UpstreamOpener {
  const resolve = options.resolve ?? new NameResolver({ timeoutMs: options.dnsTimeoutMs ?? 5_000 }).forWorkspace("");
  const hostAddresses = options.hostAddresses ?? hostAddressesFromInterfaces;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const log = limitedLog(options.log, options.logLimiter ?? new LogLimiter(), options.logKey ?? "");
  const allowedPorts = options.allowedPorts ?? DEFAULT_EGRESS_PORTS;
  const admitUpstream = options.admitUpstream ?? ((): Admission => ({ ok: true, release: () => undefined }));
  const timeouts = {
    idleMs: options.idleTimeoutMs ?? DEFAULT_TUNNEL_IDLE_MS,
    maxMs: options.maxLifetimeMs ?? DEFAULT_TUNNEL_MAX_MS,
  };

  /** Resolves, checks and connects; a Failure says what to answer instead. `signal`: the client went away. */
  async function open(target: Target, signal?: AbortSignal): Promise<Duplex | Failure> {
    const rules = {
      policy: options.policy(),
      internal: options.internal ?? [],
      resolve,
      hostAddresses: hostAddresses(),
      operatorHostAddresses: options.operatorHostAddresses,
    };
    const resolution = await resolveDestination(target, rules, signal);
    if (!resolution.ok) {
      if (resolution.reason === "dns_failed" || resolution.reason === "dns_busy") {
        log.info(resolution.reason, "egress lookup failed", {
          host: target.host,
          port: target.port,
          detail: resolution.logDetail,
        });
        const status = resolution.reason === "dns_busy" ? 429 : 502;
        return { status, header: ERROR_HEADER, code: resolution.reason, message: resolution.detail };
      }
      noteRefusal(target, resolution.reason, resolution.logDetail);
      return { status: 403, header: REFUSED_HEADER, code: resolution.reason, message: resolution.detail };
    }
    try {
      const socket = await connectToAny(resolution.addresses, target.port, connectTimeoutMs);
      server.track(socket);
      return socket;
    } catch (error) {
      const timedOut = error instanceof ConnectFailure && error.timedOut;
      const detail = `could not connect to ${target.host} port ${target.port}: ${(error as Error).message}`;
      log.info("connect_failed", "egress connect failed", { host: target.host, port: target.port, detail });
      // The failure's own message names the address tried: the client hears only why.
      const why = timedOut
        ? `no connection within ${connectTimeoutMs} ms`
        : (((error as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? "the connection failed");
      const message =
        net.isIP(target.host) !== 0 ? detail : `could not connect to ${target.host} port ${target.port}: ${why}`;
      return {
        status: timedOut ? 504 : 502,
        header: ERROR_HEADER,
        code: timedOut ? "connect_timeout" : "connect_failed",
        message,
      };
    }
  }

  function noteRefusal(target: Target, reason: RefusalReason, logDetail: string): void {
    options.onRefusal?.(target.host, target.port, reason);
    log.warn("refused", "egress refused", { host: target.host, port: target.port, reason, detail: logDetail });
  }

  /** Refuses a port that is not the operator's (before any lookup); null when it may be connected to. */
  function refusePort(target: Target): Failure | null {
    if (isPortAllowed(allowedPorts, options.internal ?? [], target.host, target.port)) return null;
    const detail = `port ${target.port} of ${target.host} is not one the egress proxy connects to (allowed: ${allowedPorts.join(", ")})`;
    noteRefusal(target, "port_not_allowed", detail);
    return { status: 403, header: REFUSED_HEADER, code: "port_not_allowed", message: detail };
  }

  async function openUpstream(kind: UpstreamKind, target: Target, signal?: AbortSignal): Promise<Duplex | Failure> {
    const refused = refusePort(target);
    if (refused !== null) return refused;
    const slot = admitUpstream(kind);
    if (!slot.ok) return { status: slot.status, header: ERROR_HEADER, code: slot.reason, message: slot.message };
    const generation = server.generation;
    let upstream: Duplex | Failure;
    try {
      upstream = await open(target, signal);
    } catch (error) {
      slot.release();
      throw error;
    }
    if (!("pipe" in upstream)) {
      slot.release();
      return upstream;
    }
    upstream.once("close", slot.release);
    if (server.generation !== generation) {
      upstream.destroy();
      return {
        status: 503,
        header: ERROR_HEADER,
        code: "egress_changed",
        message: `the workspace's egress changed while ${target.host} port ${target.port} was being connected to; try again`,
      };
    }
    return upstream;
  }

  function superviseUpstream(
    kind: UpstreamKind,
    upstream: Duplex,
    watched: readonly Duplex[],
    ends: ReadonlyArray<{ destroy(): void }>,
  ): void {
    const cut = (reason: CutReason): void => {
      watch.stop();
      unhold();
      log.debug("cut", "egress upstream cut", { kind, reason });
      for (const end of ends) end.destroy();
      options.onCut?.(kind, reason);
    };
    const watch = watchUpstream(watched, timeouts, cut);
    const unhold = server.holdUpstream(cut);
    upstream.once("close", () => {
      watch.stop();
      unhold();
    });
  }

  return { openUpstream, superviseUpstream };
}
