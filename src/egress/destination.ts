/**
 * From what a client asked the proxy for to a connected socket: parse the target, decide the name
 * by policy (before any lookup), resolve on the sidecar's side, check every address, then connect
 * to one of exactly those addresses (no second lookup, so no DNS rebinding between check and use).
 */
import { promises as dns } from "node:dns";
import net from "node:net";
import { errorMessage } from "../errors.js";
import { checkAddress } from "./addresses.js";
import { isInternal, type InternalDestination } from "./internal.js";
import { decideHost, normalizeHost, type EgressPolicy, type HostRefusal } from "./policy.js";

export interface Target {
  /** Normalised (normalizeHost); an IPv6 address without brackets. */
  host: string;
  port: number;
}

export type Resolver = (host: string) => Promise<string[]>;

/** Why a destination is refused; port_not_allowed is decided before this module is reached (internal.ts isPortAllowed). */
export type RefusalReason = HostRefusal | "private_address" | "host_address" | "port_not_allowed";

export type Resolution =
  | { ok: true; addresses: string[]; internal: boolean }
  | { ok: false; reason: RefusalReason; detail: string }
  | { ok: false; reason: "dns_failed"; detail: string };

export interface DestinationRules {
  policy: EgressPolicy;
  internal: readonly InternalDestination[];
  resolve: Resolver;
  hostAddresses: readonly string[];
}

/** A CONNECT target: host:port or [v6]:port, nothing else. A string is what was wrong with it. */
export function parseConnectTarget(authority: string): Target | string {
  const match = /^(\[[^\]]*\]|[^:[\]/?#@\s]+):(\d{1,5})$/.exec(authority);
  if (match === null) return `CONNECT needs host:port (or [IPv6]:port), got ${JSON.stringify(authority.slice(0, 200))}`;
  return checkTarget(match[1] ?? "", Number(match[2]));
}

/** An absolute-form request target (http://host[:port]/path). A string is what was wrong with it. */
export function parseAbsoluteTarget(requestTarget: string): { target: Target; authority: string; path: string } | string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(requestTarget)) {
    return "this is an HTTP proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port for HTTPS";
  }
  let url: URL;
  try {
    url = new URL(requestTarget);
  } catch {
    return "the request target is not a valid URL";
  }
  if (url.protocol !== "http:") return `only http:// URLs are forwarded as requests; use CONNECT for ${url.protocol.slice(0, -1)}`;
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
 */
export async function resolveDestination(target: Target, rules: DestinationRules): Promise<Resolution> {
  const internal = isInternal(rules.internal, target.host, target.port);
  if (!internal) {
    const decision = decideHost(rules.policy, target.host);
    if (!decision.allowed) return { ok: false, reason: decision.reason, detail: `${target.host} is refused by the workspace's egress policy (${decision.reason})` };
  }
  let addresses: string[];
  if (net.isIP(target.host) !== 0) {
    addresses = [target.host];
  } else {
    try {
      addresses = await rules.resolve(target.host);
    } catch (error) {
      return { ok: false, reason: "dns_failed", detail: `${target.host} did not resolve: ${errorMessage(error)}` };
    }
    if (addresses.length === 0 || addresses.some((address) => net.isIP(address) === 0)) {
      return { ok: false, reason: "dns_failed", detail: `${target.host} did not resolve to IP addresses` };
    }
  }
  if (internal) return { ok: true, addresses, internal };
  for (const address of addresses) {
    const check = checkAddress(address, rules.hostAddresses);
    if (check.allowed) continue;
    const why = check.reason === "host_address" ? "an address of the host" : `a ${check.range.replace("_", "-")} address`;
    const what = address === target.host ? `${address} is ${why}` : `${target.host} resolves to ${address}, ${why}`;
    return { ok: false, reason: check.reason, detail: what };
  }
  return { ok: true, addresses, internal };
}

/** The default resolver: getaddrinfo (so /etc/hosts counts) for every address, bounded in time. */
export function lookupAddresses(timeoutMs: number): Resolver {
  return async (host) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      // getaddrinfo cannot be cancelled; the race only stops us waiting for it.
      const found = await Promise.race([dns.lookup(host, { all: true, verbatim: true }), timeout]);
      return found.map((entry) => entry.address);
    } finally {
      clearTimeout(timer);
    }
  };
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
