/**
 * Which headers cross the proxy.
 *
 * Towards the model API only a fixed set: what codex sends (recorded from codex 0.163) and nothing
 * else, so a tenant cannot pick the organisation or project billed (`OpenAI-Organization`,
 * `OpenAI-Project` come only from the operator), turn on beta features, or pass identity and
 * forwarding headers. The client's Authorization (its per-turn credential) never goes upstream, and
 * the real key never comes back. Back to the client: everything but hop-by-hop headers (RFC 9110
 * §7.6.1) and the upstream's identity headers (the organisation and project, cookies).
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/** Request headers forwarded as the client sent them; every other one is dropped. */
export const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  "accept",
  "content-type",
  "user-agent",
  "originator",
  "session_id",
  "session-id",
  "thread-id",
  "conversation_id",
  "x-client-request-id",
  "x-codex-beta-features",
  "x-codex-turn-metadata",
  "x-codex-turn-state",
  "x-codex-window-id",
  "x-codex-parent-thread-id",
  "x-openai-subagent",
  "x-responsesapi-include-timing-metrics",
  "traceparent",
  "tracestate",
]);

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

/** Response headers that say who the operator is at the model API, or set state in the client. */
const IDENTITY_RESPONSE_HEADERS: ReadonlySet<string> = new Set(["openai-organization", "openai-project", "set-cookie"]);

/** What the operator sends upstream on every request. */
export interface UpstreamIdentity {
  /** The real key, as `Authorization: Bearer …`; null sends none. */
  apiKey: string | null;
  /** `OpenAI-Organization`, or null. */
  organization: string | null;
  /** `OpenAI-Project`, or null. */
  project: string | null;
}

/** The headers to send upstream for a client's request whose (checked) body is `bodyLength` bytes, or null for none. */
export function upstreamRequestHeaders(
  headers: IncomingHttpHeaders,
  identity: UpstreamIdentity,
  bodyLength: number | null,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  // Asked for uncompressed, so usage can be read off the stream.
  out["accept-encoding"] = "identity";
  if (bodyLength !== null) out["content-length"] = String(bodyLength);
  if (identity.apiKey !== null) out.authorization = `Bearer ${identity.apiKey}`;
  if (identity.organization !== null) out["openai-organization"] = identity.organization;
  if (identity.project !== null) out["openai-project"] = identity.project;
  return out;
}

/** The headers to send the client for the upstream's response. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const dropped = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || IDENTITY_RESPONSE_HEADERS.has(name) || dropped.has(name))
      continue;
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
  return new Set(
    value
      .split(",")
      .map((token) => token.trim().toLowerCase())
      .filter(Boolean),
  );
}
