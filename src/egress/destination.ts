/**
 * From what a client asked the proxy for to a connected socket: parse the target, decide the name
 * by policy (before any lookup), resolve on the sidecar's side, check every address, then connect
 * to one of exactly those addresses (no second lookup, so no DNS rebinding between check and use).
 */
import net from "node:net";
import { errorMessage } from "../errors.js";
import { checkAddress, type AddressSet } from "../policy/addresses.js";
import { isInternal, type InternalDestination } from "../policy/internal-destinations.js";
import { decideHost, normalizeHost, type EgressPolicy, type HostRefusal } from "../policy/egress-policy.js";
import { LookupError, type Resolver } from "./resolver.js";

export type { Resolver } from "./resolver.js";

export interface Target {
  /** Normalised (normalizeHost); an IPv6 address without brackets. */
  host: string;
  port: number;
}

/** Why a destination is refused; port_not_allowed is decided before this module is reached (policy/internal-destinations.ts isPortAllowed). */
export type RefusalReason = HostRefusal | "private_address" | "host_address" | "port_not_allowed";

/**
 * `detail` is what the client is told: for a name, never what it resolved to (the sidecar must not
 * be an oracle for the DNS it can see and the tenant cannot). `logDetail`, for the sidecar's own
 * log, may name the addresses.
 */
export type Resolution =
  | { ok: true; addresses: string[]; internal: boolean }
  | { ok: false; reason: RefusalReason; detail: string; logDetail: string }
  | { ok: false; reason: "dns_failed" | "dns_busy"; detail: string; logDetail: string };

export interface DestinationRules {
  policy: EgressPolicy;
  internal: readonly InternalDestination[];
  resolve: Resolver;
  hostAddresses: readonly string[];
  /** The operator's further addresses of the host (ALIVE_CODEX_HOST_ADDRESSES), refused as host_address. */
  operatorHostAddresses?: AddressSet;
}

/** A CONNECT target: host:port or [v6]:port, nothing else. A string is what was wrong with it. */
export function parseConnectTarget(authority: string): Target | string {
  const match = /^(\[[^\]]*\]|[^:[\]/?#@\s]+):(\d{1,5})$/.exec(authority);
  if (match === null) return `CONNECT needs host:port (or [IPv6]:port), got ${JSON.stringify(authority.slice(0, 200))}`;
  return checkTarget(match[1] ?? "", Number(match[2]));
}

/** An absolute-form request target (http://host[:port]/path). A string is what was wrong with it. */
export function parseAbsoluteTarget(
  requestTarget: string,
): { target: Target; authority: string; path: string } | string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(requestTarget)) {
    return "this is an HTTP proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port for HTTPS";
  }
  let url: URL;
  try {
    url = new URL(requestTarget);
  } catch {
    return "the request target is not a valid URL";
  }
  if (url.protocol !== "http:")
    return `only http:// URLs are forwarded as requests; use CONNECT for ${url.protocol.slice(0, -1)}`;
  const target = checkTarget(url.hostname, url.port === "" ? 80 : Number(url.port));
  return typeof target === "string" ? target : { target, authority: url.host, path: `${url.pathname}${url.search}` };
}

function checkTarget(rawHost: string, port: number): Target | string {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return `port ${port} is not a port from 1 to 65535`;
  if (rawHost.includes("%")) return "IPv6 zone ids are not accepted";
  const host = normalizeHost(rawHost);
  if (host === undefined) return `${JSON.stringify(rawHost.slice(0, 200))} is not a host name or IP address`;
  return { host, port };
}

/**
 * Decides and resolves a target. An internal destination skips the policy and the address checks
 * (it is the operator's deliberate exception); anything else must pass the policy by name, then
 * every resolved address must be public and not the host's own: one bad address refuses the name.
 * `signal` ends a lookup whose client went away.
 */
export async function resolveDestination(
  target: Target,
  rules: DestinationRules,
  signal?: AbortSignal,
): Promise<Resolution> {
  const internal = isInternal(rules.internal, target.host, target.port);
  if (!internal) {
    const decision = decideHost(rules.policy, target.host);
    if (!decision.allowed) {
      const detail = `${target.host} is refused by the workspace's egress policy (${decision.reason})`;
      return { ok: false, reason: decision.reason, detail, logDetail: detail };
    }
  }
  const literal = net.isIP(target.host) !== 0;
  let addresses: string[];
  if (literal) {
    addresses = [target.host];
  } else {
    try {
      addresses = await rules.resolve(target.host, signal);
    } catch (error) {
      const busy = error instanceof LookupError && error.failure === "busy";
      const detail = `${target.host} did not resolve: ${errorMessage(error)}`;
      return { ok: false, reason: busy ? "dns_busy" : "dns_failed", detail, logDetail: detail };
    }
    if (addresses.length === 0 || addresses.some((address) => net.isIP(address) === 0)) {
      const detail = `${target.host} did not resolve to IP addresses`;
      return { ok: false, reason: "dns_failed", detail, logDetail: detail };
    }
  }
  if (internal) return { ok: true, addresses, internal };
  for (const address of addresses) {
    const check = checkAddress(address, rules.hostAddresses, rules.operatorHostAddresses);
    if (check.allowed) continue;
    const why =
      check.reason === "host_address" ? "an address of the host" : `a ${check.range.replace("_", "-")} address`;
    if (literal) {
      const detail = `${address} is ${why}`;
      return { ok: false, reason: check.reason, detail, logDetail: detail };
    }
    // The reason code says which check refused; which address, and of what range, stays here.
    const detail =
      check.reason === "host_address"
        ? `${target.host} resolves to an address of the host`
        : `${target.host} resolves to an address that is not public`;
    return { ok: false, reason: check.reason, detail, logDetail: `${target.host} resolves to ${address}, ${why}` };
  }
  return { ok: true, addresses, internal };
}

export class ConnectFailure extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ConnectFailure";
  }
}

/** Connects to the first of `addresses` that answers, in order, each attempt bounded by `timeoutMs`. */
export async function connectToAny(addresses: readonly string[], port: number, timeoutMs: number): Promise<net.Socket> {
  let last: ConnectFailure | undefined;
  for (const address of addresses) {
    try {
      return await connectTo(address, port, timeoutMs);
    } catch (error) {
      last = error as ConnectFailure;
    }
  }
  throw last ?? new ConnectFailure("no address to connect to", false);
}

function connectTo(address: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // An IP literal: net.connect does no lookup, so this is the address that was checked.
    const socket = net.connect({ host: address, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectFailure(`${address} port ${port}: no connection within ${timeoutMs} ms`, true));
    }, timeoutMs);
    const onError = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ConnectFailure(`${address} port ${port}: ${errorMessage(error)}`, false, { cause: error }));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      // Until the caller listens: an error in between must not become an uncaught exception.
      socket.on("error", () => {});
      resolve(socket);
    });
  });
}
