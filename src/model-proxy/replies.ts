/**
 * The proxy's own answers, all in OpenAI's error shape `{ error: { message, type, param, code } }`
 * so codex reports them as it would the real API's, and the wording of upstream failures.
 */
import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { UpstreamFailure } from "./options.js";

export type OpenAiErrorType = "invalid_request_error" | "server_error";

export function openAiErrorBody(message: string, type: OpenAiErrorType, code: string): string {
  return JSON.stringify({ error: { message, type, param: null, code } });
}

/** The header on every answer the proxy gives instead of forwarding, naming why. */
export const REFUSED_HEADER = "x-alive-model-refused";

export function sendOpenAiError(
  res: ServerResponse,
  status: number,
  type: OpenAiErrorType,
  code: string,
  message: string,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = openAiErrorBody(message, type, code);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
}

/**
 * Answers a WebSocket upgrade (codex's `GET /v1/responses` attempt) with 426 and closes: a
 * client falls back to HTTP at once. Nothing is forwarded.
 */
export function refuseUpgrade(socket: Duplex): void {
  const body = openAiErrorBody(
    "WebSocket is not supported by this endpoint; use HTTP (POST /v1/responses)",
    "invalid_request_error",
    "websocket_unsupported",
  );
  socket.on("error", () => socket.destroy());
  socket.end(
    "HTTP/1.1 426 Upgrade Required\r\n" +
      "content-type: application/json\r\n" +
      `${REFUSED_HEADER}: websocket\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      "connection: close\r\n\r\n" +
      body,
  );
}

/** Set on the error the proxy destroys a request with when connecting takes too long. */
export const CONNECT_TIMEOUT_CODE = "ALIVE_CONNECT_TIMEOUT";

const DNS_CODES: ReadonlySet<string> = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA", "EAI_NONAME"]);
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENETDOWN",
  "EADDRNOTAVAIL",
]);

/** Why a request got no answer from `origin`, by the error's code (never its message text). */
export function describeUpstreamError(error: unknown, origin: string, connectTimeoutMs: number): UpstreamFailure {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? "";
  const detail = error instanceof Error ? error.message : String(error);
  const fail = (status: 502 | 504, message: string): UpstreamFailure => ({
    code: "model_unreachable",
    status,
    message,
  });
  if (code === CONNECT_TIMEOUT_CODE)
    return fail(504, `the model API at ${origin} did not accept a connection within ${connectTimeoutMs} ms`);
  if (code === "ETIMEDOUT") return fail(504, `connecting to the model API at ${origin} timed out (ETIMEDOUT)`);
  if (code === "ECONNREFUSED") return fail(502, `the model API at ${origin} refused the connection (ECONNREFUSED)`);
  if (DNS_CODES.has(code)) return fail(502, `cannot resolve the model API's host for ${origin} (${code})`);
  if (UNREACHABLE_CODES.has(code)) return fail(502, `the model API at ${origin} is unreachable (${code})`);
  if (isTlsCode(code))
    return fail(502, `the TLS handshake with the model API at ${origin} failed: ${detail} (${code})`);
  if (code === "ECONNRESET" || code === "EPIPE")
    return fail(502, `the model API at ${origin} closed the connection before answering (${code})`);
  return fail(502, `the request to the model API at ${origin} failed: ${detail}${code ? ` (${code})` : ""}`);
}

/** OpenSSL and Node name TLS and certificate failures with these codes. */
function isTlsCode(code: string): boolean {
  return /^(ERR_TLS_|ERR_SSL_|EPROTO$|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_)/.test(
    code,
  );
}
