/**
 * The operator's internal destinations (Alive's own API on the host or the LAN): the only
 * non-public host:port pairs the egress proxy ever connects to, in every policy mode. Matched on
 * the host and port a workspace asks for, never on what some other name resolves to.
 */
import { isIP } from "node:net";
import { ConfigError } from "../shared/setting-parsers.js";
import { canonicalAddress } from "./addresses.js";
import { normalizeHost } from "./egress-policy.js";

export interface InternalDestination {
  /** Normalised as normalizeHost does (an IP address in its canonical form). */
  host: string;
  port: number;
  /** The entry as the operator wrote it, for logs and errors. */
  entry: string;
}

const DEFAULT_PORTS: Record<string, number> = { "http:": 80, "https:": 443 };
const EXPECTED = "http(s)://host[:port] origins or host:port pairs";

/** One host spelling for comparisons: IP addresses canonical, names as normalizeHost gives them. */
function comparableHost(host: string): string | undefined {
  const normalized = normalizeHost(host);
  if (normalized === undefined) return undefined;
  return isIP(normalized) === 0 ? normalized : canonicalAddress(normalized);
}

/**
 * Parses `http://10.0.0.5:8080`, `https://alive.internal` (port 443) or `alive.internal:8080`
 * (port required). A path is ignored, so ALIVE_API_URL itself can be an entry; user info is refused
 * (it does not belong in a destination list, and it would end up in logs).
 */
export function parseInternalDestinations(entries: readonly string[], setting: string): InternalDestination[] {
  return entries.map((entry) => parseInternalDestination(entry, setting));
}

function parseInternalDestination(entry: string, setting: string): InternalDestination {
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(entry);
  let url: URL;
  try {
    url = new URL(hasScheme ? entry : `http://${entry}`);
  } catch {
    throw new ConfigError(setting, entry, EXPECTED);
  }
  if (!(url.protocol in DEFAULT_PORTS)) throw new ConfigError(setting, entry, `${EXPECTED} (only http and https)`);
  if (url.username !== "" || url.password !== "")
    throw new ConfigError(setting, "[redacted]", `${EXPECTED} without user or password`);
  if (!hasScheme && (url.port === "" || !/^[^/?#]+$/.test(entry)))
    throw new ConfigError(setting, entry, `${EXPECTED}: host:port needs a port and nothing after it`);
  const host = comparableHost(url.hostname);
  if (host === undefined) throw new ConfigError(setting, entry, EXPECTED);
  const port = url.port === "" ? (DEFAULT_PORTS[url.protocol] ?? 80) : Number(url.port);
  return { host, port, entry };
}

/** Is host:port one of the operator's internal destinations? */
export function isInternal(destinations: readonly InternalDestination[], host: string, port: number): boolean {
  if (destinations.length === 0) return false;
  const wanted = comparableHost(host);
  return wanted !== undefined && destinations.some((d) => d.host === wanted && d.port === port);
}

/**
 * The ports the egress proxy connects to unless the operator names others (ALIVE_CODEX_EGRESS_PORTS):
 * HTTPS and HTTP. Any other port would let a workspace speak SMTP, SSH or anything else from the
 * host's address.
 */
export const DEFAULT_EGRESS_PORTS: readonly number[] = [443, 80];

/** May the egress proxy connect to host:port? One of `ports`, or an internal destination's own port. */
export function isPortAllowed(
  ports: readonly number[],
  destinations: readonly InternalDestination[],
  host: string,
  port: number,
): boolean {
  return ports.includes(port) || isInternal(destinations, host, port);
}
