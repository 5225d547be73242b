/** What the model proxy is told, checked and given defaults in one place. */
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { LogFields, Logger } from "../log.js";
import type { NetLookup } from "./upstream-lookup.js";
import { HOSTED_TOOLS } from "./body-policy.js";
import { DEFAULT_MODEL_ROUTES, parseModelRoute, type ModelRoute } from "./routes.js";
import type { TokenUsage } from "./sse-usage.js";

/** An answer the caller gives instead of forwarding (e.g. a spent token budget). */
export interface ProxyRefusal {
  /** HTTP status, 400-599 (e.g. 429 or 403). */
  status: number;
  /** OpenAI-style error code, e.g. "budget_exceeded". */
  code: string;
  message: string;
}

/** Why the proxy answered a request itself: the value of its `x-alive-model-refused` header. */
export type RefusalReason =
  | "credential"
  | "path"
  | "websocket"
  | "content_encoding"
  | "body_too_large"
  | "invalid_body"
  | "remote_input"
  | "web_search"
  | "remote_mcp"
  | "hosted_tool"
  | "background"
  | "concurrency"
  | "rate_limited"
  | (string & {});

/** Why a request never got an answer from the model API. */
export interface UpstreamFailure {
  code: "model_unreachable";
  /** 502 (refused, DNS, TLS, reset) or 504 (connect timeout): what the client was answered. */
  status: 502 | 504;
  /** Says why, naming the upstream's origin (never a key). */
  message: string;
}

export interface ModelProxyOptions<T> {
  /** Where requests go, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`. */
  upstreamBaseUrl: string | URL;
  /** The real key, sent upstream as `Authorization: Bearer …`; null sends no Authorization. */
  apiKey: string | null;
  /** What a client's bearer credential refers to, or null if it is unknown or revoked. */
  authorize: (token: string) => T | null;
  /** The local path that maps onto the upstream base URL. Default "/v1". */
  basePath?: string;
  /** How long connecting (TCP, and TLS for https) to the upstream may take. Default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * How the upstream's name becomes addresses (UpstreamLookup.lookup: its own resolver, kept by
   * TTL). Default: getaddrinfo, on the thread pool every other lookup in the process shares.
   */
  lookup?: NetLookup;
  /** Called before forwarding (with a concurrency slot held); a refusal is answered to the client and nothing is forwarded. */
  admit?: (ref: T) => ProxyRefusal | null | undefined;
  /** Extra (method, path) pairs forwarded besides DEFAULT_MODEL_ROUTES, as "METHOD /path" or parsed. */
  extraRoutes?: ReadonlyArray<string | ModelRoute>;
  /** Largest request body, in bytes (413 above it). Default 32 MiB. */
  maxBodyBytes?: number;
  /** The egress policy in force for the ref's workspace or turn; the body policy follows it. Default "public". */
  egress?: (ref: T) => EgressPolicy;
  /** Hosted tools allowed under "model" or an allow-list: web_search, code_interpreter, file_search. Default none. */
  hostedTools?: readonly string[];
  /** `OpenAI-Organization` and `OpenAI-Project` sent upstream (never the client's). Default none. */
  organization?: string | null;
  project?: string | null;
  /** Concurrent upstream requests per turn (turnKey); more wait in line. Default 2. */
  concurrencyPerTurn?: number;
  /** Requests that may wait for a slot per turn; past it, 429. Default 64. */
  queuePerTurn?: number;
  /** Upstream connections the proxy (one per workspace) may hold at once; more requests wait for one. Default max(16, 4 × concurrencyPerTurn). */
  maxSockets?: number;
  /** Of them, how many are kept idle for reuse. Default max(2, concurrencyPerTurn). */
  maxFreeSockets?: number;
  /** Requests a minute per workspace (workspaceKey) forwarded; past it, 429. 0: no limit. Default 120. */
  ratePerMinute?: number;
  /** The turn a ref belongs to, for the concurrency cap. Default: one turn for the whole proxy. */
  turnKey?: (ref: T) => string;
  /** The workspace a ref belongs to, for the rate and the once-per-reason refusal log. Default: one for the whole proxy. */
  workspaceKey?: (ref: T) => string;
  /** After the client has gone, an upstream response is still read for its usage until it ends, or is quiet this long. Default 60 s. */
  drainIdleMs?: number;
  /** Called for every request the proxy answers itself (ref null before the credential was checked). */
  onRefusal?: (ref: T | null, reason: RefusalReason) => void;
  /** Called once per forwarded request. */
  onRequest?: (ref: T) => void;
  /** Called with the exact usage of each model response (SSE `response.completed`, or a JSON body's `usage`). */
  onUsage?: (ref: T, usage: TokenUsage) => void;
  /** Called when the upstream could not be reached, so the caller can fail the turn at once. */
  onUpstreamError?: (ref: T, failure: UpstreamFailure) => void;
  logger?: Logger;
  /** Context fields for log lines about a request (e.g. workspaceId, turnId). */
  logFields?: (ref: T) => LogFields;
}

export interface ResolvedModelProxyOptions<T> extends Required<
  Pick<
    ModelProxyOptions<T>,
    | "apiKey"
    | "authorize"
    | "connectTimeoutMs"
    | "maxBodyBytes"
    | "egress"
    | "concurrencyPerTurn"
    | "queuePerTurn"
    | "maxSockets"
    | "maxFreeSockets"
    | "ratePerMinute"
    | "turnKey"
    | "workspaceKey"
    | "drainIdleMs"
  >
> {
  routes: ModelRoute[];
  hostedTools: ReadonlySet<string>;
  organization: string | null;
  project: string | null;
  onRefusal: ModelProxyOptions<T>["onRefusal"];
  upstream: URL;
  /** The upstream's path prefix without a trailing slash ("" for the root). */
  upstreamPath: string;
  /** The local prefix without a trailing slash ("" to map every path). */
  basePath: string;
  admit: ModelProxyOptions<T>["admit"];
  lookup: NetLookup | undefined;
  onRequest: ModelProxyOptions<T>["onRequest"];
  onUsage: ModelProxyOptions<T>["onUsage"];
  onUpstreamError: ModelProxyOptions<T>["onUpstreamError"];
  logger: Logger | undefined;
  logFields: (ref: T) => LogFields;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const MAX_CONNECT_TIMEOUT_MS = 120_000;
export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024;
export const DEFAULT_CONCURRENCY_PER_TURN = 2;
export const DEFAULT_QUEUE_PER_TURN = 64;
export const DEFAULT_RATE_PER_MINUTE = 120;
export const DEFAULT_DRAIN_IDLE_MS = 60_000;

/** Checks every option once; an error names the option, the value received and what was expected. */
export function resolveModelProxyOptions<T>(options: ModelProxyOptions<T>): ResolvedModelProxyOptions<T> {
  const upstream = validateUpstreamBaseUrl(options.upstreamBaseUrl);
  if (
    options.apiKey !== null &&
    (typeof options.apiKey !== "string" || options.apiKey === "" || /[\r\n]/.test(options.apiKey))
  ) {
    // Never echo the key itself.
    throw new TypeError("invalid model proxy option apiKey: expected null or a non-empty single-line string");
  }
  if (typeof options.authorize !== "function") throw invalid("authorize", options.authorize, "a function");
  const concurrencyPerTurn = validateCount(
    "concurrencyPerTurn",
    options.concurrencyPerTurn ?? DEFAULT_CONCURRENCY_PER_TURN,
    1,
    1024,
  );
  // Room for a turn's requests and the drains of its workspace's earlier turns (each bounded by the concurrency).
  const maxSockets = validateCount("maxSockets", options.maxSockets ?? Math.max(16, 4 * concurrencyPerTurn), 1, 65_536);
  return {
    upstream,
    upstreamPath: upstream.pathname.replace(/\/+$/, ""),
    basePath: validateBasePath(options.basePath ?? "/v1"),
    apiKey: options.apiKey,
    authorize: options.authorize,
    connectTimeoutMs: validateTimeout(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS),
    admit: options.admit,
    lookup: options.lookup,
    routes: [...DEFAULT_MODEL_ROUTES, ...validateRoutes(options.extraRoutes ?? [])],
    maxBodyBytes: validateCount("maxBodyBytes", options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, 1, 1024 * 1024 * 1024),
    egress: options.egress ?? (() => "public"),
    hostedTools: validateHostedTools(options.hostedTools ?? []),
    organization: validateIdentity("organization", options.organization ?? null),
    project: validateIdentity("project", options.project ?? null),
    concurrencyPerTurn,
    maxSockets,
    maxFreeSockets: validateCount(
      "maxFreeSockets",
      options.maxFreeSockets ?? Math.min(maxSockets, Math.max(2, concurrencyPerTurn)),
      0,
      maxSockets,
    ),
    queuePerTurn: validateCount("queuePerTurn", options.queuePerTurn ?? DEFAULT_QUEUE_PER_TURN, 0, 100_000),
    ratePerMinute: validateCount("ratePerMinute", options.ratePerMinute ?? DEFAULT_RATE_PER_MINUTE, 0, 1_000_000),
    turnKey: options.turnKey ?? (() => ""),
    workspaceKey: options.workspaceKey ?? (() => ""),
    drainIdleMs: validateCount("drainIdleMs", options.drainIdleMs ?? DEFAULT_DRAIN_IDLE_MS, 1, 3_600_000),
    onRefusal: options.onRefusal,
    onRequest: options.onRequest,
    onUsage: options.onUsage,
    onUpstreamError: options.onUpstreamError,
    logger: options.logger,
    logFields: options.logFields ?? (() => ({})),
  };
}

function validateUpstreamBaseUrl(raw: string | URL): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid("upstreamBaseUrl", raw, "an http:// or https:// URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw invalid("upstreamBaseUrl", url.origin, "an http:// or https:// URL");
  // Credentials in the URL would go to logs and error messages with it; the key goes in apiKey.
  if (url.username !== "" || url.password !== "")
    throw invalid(
      "upstreamBaseUrl",
      `${url.protocol}//…@${url.host}`,
      "a URL without user info (the key goes in apiKey)",
    );
  if (url.search !== "" || url.hash !== "")
    throw invalid("upstreamBaseUrl", url.href, "a URL without query or fragment");
  return url;
}

function validateBasePath(raw: string): string {
  if (typeof raw !== "string" || !raw.startsWith("/") || /[?#\s]|\/\.\.?(\/|$)/.test(raw)) {
    throw invalid("basePath", raw, 'an absolute path such as "/v1"');
  }
  return raw.replace(/\/+$/, "");
}

function validateTimeout(raw: number): number {
  if (!Number.isInteger(raw) || raw < 1 || raw > MAX_CONNECT_TIMEOUT_MS) {
    throw invalid("connectTimeoutMs", raw, `a whole number of ms from 1 to ${MAX_CONNECT_TIMEOUT_MS}`);
  }
  return raw;
}

function validateRoutes(raw: ReadonlyArray<string | ModelRoute>): ModelRoute[] {
  if (!Array.isArray(raw)) throw invalid("extraRoutes", raw, 'an array of "METHOD /path"');
  return raw.map((entry, i) => {
    try {
      return parseModelRoute(typeof entry === "string" ? entry : `${entry.method} ${entry.path}`);
    } catch (error) {
      throw new TypeError(`invalid model proxy option extraRoutes[${i}]: ${(error as Error).message}`);
    }
  });
}

function validateHostedTools(raw: readonly string[]): ReadonlySet<string> {
  for (const tool of raw)
    if (!(HOSTED_TOOLS as readonly string[]).includes(tool))
      throw invalid("hostedTools", tool, `one of ${HOSTED_TOOLS.join(", ")}`);
  return new Set(raw);
}

function validateIdentity(option: string, raw: string | null): string | null {
  if (raw !== null && (typeof raw !== "string" || !/^[A-Za-z0-9_-]{1,256}$/.test(raw)))
    throw invalid(option, raw, "null or an id of letters, digits, _ and - (e.g. org-abc123)");
  return raw;
}

function validateCount(option: string, raw: number, min: number, max: number): number {
  if (!Number.isInteger(raw) || raw < min || raw > max)
    throw invalid(option, raw, `a whole number from ${min} to ${max}`);
  return raw;
}

function invalid(option: string, received: unknown, expected: string): TypeError {
  const shown =
    typeof received === "string"
      ? JSON.stringify(received)
      : typeof received === "function"
        ? "a function"
        : String(received);
  return new TypeError(`invalid model proxy option ${option}: got ${shown}, expected ${expected}`);
}
