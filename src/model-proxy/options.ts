/** What the model proxy is told, checked and given defaults in one place. */
import type { LogFields, Logger } from "../log.js";
import type { TokenUsage } from "./sse-usage.js";

/** An answer the caller gives instead of forwarding (e.g. a spent token budget). */
export interface ProxyRefusal {
  /** HTTP status, 400-599 (e.g. 429 or 403). */
  status: number;
  /** OpenAI-style error code, e.g. "budget_exceeded". */
  code: string;
  message: string;
}

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
  /** Called before forwarding; a refusal is answered to the client and nothing is forwarded. */
  admit?: (ref: T) => ProxyRefusal | null | undefined;
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

export interface ResolvedModelProxyOptions<T> extends Required<Pick<ModelProxyOptions<T>, "apiKey" | "authorize" | "connectTimeoutMs">> {
  upstream: URL;
  /** The upstream's path prefix without a trailing slash ("" for the root). */
  upstreamPath: string;
  /** The local prefix without a trailing slash ("" to map every path). */
  basePath: string;
  admit: ModelProxyOptions<T>["admit"];
  onRequest: ModelProxyOptions<T>["onRequest"];
  onUsage: ModelProxyOptions<T>["onUsage"];
  onUpstreamError: ModelProxyOptions<T>["onUpstreamError"];
  logger: Logger | undefined;
  logFields: (ref: T) => LogFields;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const MAX_CONNECT_TIMEOUT_MS = 120_000;

/** Checks every option once; an error names the option, the value received and what was expected. */
export function resolveModelProxyOptions<T>(options: ModelProxyOptions<T>): ResolvedModelProxyOptions<T> {
  const upstream = validateUpstreamBaseUrl(options.upstreamBaseUrl);
  if (options.apiKey !== null && (typeof options.apiKey !== "string" || options.apiKey === "" || /[\r\n]/.test(options.apiKey))) {
    // Never echo the key itself.
    throw new TypeError("invalid model proxy option apiKey: expected null or a non-empty single-line string");
  }
  if (typeof options.authorize !== "function") throw invalid("authorize", options.authorize, "a function");
  return {
    upstream,
    upstreamPath: upstream.pathname.replace(/\/+$/, ""),
    basePath: validateBasePath(options.basePath ?? "/v1"),
    apiKey: options.apiKey,
    authorize: options.authorize,
    connectTimeoutMs: validateTimeout(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS),
    admit: options.admit,
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
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalid("upstreamBaseUrl", url.origin, "an http:// or https:// URL");
  // Credentials in the URL would go to logs and error messages with it; the key goes in apiKey.
  if (url.username !== "" || url.password !== "") throw invalid("upstreamBaseUrl", `${url.protocol}//…@${url.host}`, "a URL without user info (the key goes in apiKey)");
  if (url.search !== "" || url.hash !== "") throw invalid("upstreamBaseUrl", url.href, "a URL without query or fragment");
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

function invalid(option: string, received: unknown, expected: string): TypeError {
  const shown = typeof received === "string" ? JSON.stringify(received) : typeof received === "function" ? "a function" : String(received);
  return new TypeError(`invalid model proxy option ${option}: got ${shown}, expected ${expected}`);
}
