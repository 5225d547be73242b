/**
 * Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1) and proxy headers belong to
 * one connection and never cross; the client's Authorization (its per-turn credential) never goes
 * upstream, and the real key never comes back.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Request headers the proxy sets itself or that make no sense upstream. */
const REPLACED_ON_REQUEST: ReadonlySet<string> = new Set([
  "authorization",
  // Node sets Host from the upstream URL.
  "host",
  // Node's server already answered 100-continue to the client.
  "expect",
  // Asked for uncompressed, so usage can be read off the stream.
  "accept-encoding",
]);

/** The headers to send upstream for a client's request. */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, apiKey: string | null): OutgoingHttpHeaders {
  const dropped = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || REPLACED_ON_REQUEST.has(name) || dropped.has(name)) continue;
    out[name] = value;
  }
  out["accept-encoding"] = "identity";
  if (apiKey !== null) out.authorization = `Bearer ${apiKey}`;
  return out;
}

/** The headers to send the client for the upstream's response. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const dropped = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || dropped.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** The bearer token of an Authorization header, or null. */
export function bearerToken(header: string | undefined): string | null {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  return match?.[1] ?? null;
}

/** Headers named in Connection are hop-by-hop too. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  if (value === undefined) return new Set();
  return new Set(value.split(",").map((token) => token.trim().toLowerCase()).filter(Boolean));
}
