/**
 * The model proxy: what codex inside a workspace container talks to instead of the model API.
 *
 * It checks the per-turn credential the container was given, swaps in the real key, forwards to
 * the upstream and streams the answer back chunk by chunk as it arrives (SSE is never buffered).
 * A refused credential or a refusal from `admit` never reaches the upstream. Token usage is read
 * off the stream as it passes. An upstream that cannot be reached is answered within
 * `connectTimeoutMs` with a 502/504 naming why, and reported, so the turn fails in seconds
 * instead of codex reconnecting until its deadline.
 *
 * The caller listens the returned server (on a per-workspace Unix socket) and closes it; closing
 * it also drops the kept-alive upstream connections.
 */
import http from "node:http";
import type { ClientRequest, IncomingMessage, Server, ServerResponse } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { LogFields } from "../log.js";
import { clientResponseHeaders, bearerToken, upstreamRequestHeaders } from "./headers.js";
import { resolveModelProxyOptions, type ModelProxyOptions, type ResolvedModelProxyOptions } from "./options.js";
import { CONNECT_TIMEOUT_CODE, describeUpstreamError, refuseUpgrade, sendOpenAiError } from "./replies.js";
import { SseUsageReader, readUsage, type TokenUsage } from "./sse-usage.js";

export type { ModelProxyOptions, ProxyRefusal, UpstreamFailure } from "./options.js";
export type { TokenUsage } from "./sse-usage.js";

/** A JSON body is kept (to read its `usage`) up to this size; past it, it is only streamed. */
const MAX_JSON_USAGE_BYTES = 8 * 1024 * 1024;

export function createModelProxy<T>(options: ModelProxyOptions<T>): Server {
  const resolved = resolveModelProxyOptions(options);
  const isHttps = resolved.upstream.protocol === "https:";
  const agent = isHttps ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  const server = http.createServer({ noDelay: true });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    try {
      handleRequest(resolved, agent, req, res);
    } catch (error) {
      resolved.logger?.error("model proxy: request handling failed", { error });
      sendOpenAiError(res, 500, "server_error", "internal_error", "the model proxy failed to handle the request");
    }
  });
  server.on("upgrade", (_req: IncomingMessage, socket: Socket) => refuseUpgrade(socket));
  server.on("close", () => agent.destroy());
  return server;
}

function handleRequest<T>(options: ResolvedModelProxyOptions<T>, agent: http.Agent, req: IncomingMessage, res: ServerResponse): void {
  const token = bearerToken(req.headers.authorization);
  const ref = token === null ? null : options.authorize(token);
  if (ref === null || ref === undefined) {
    // Never log the token: a wrong one may be a real key pasted by mistake.
    options.logger?.debug("model proxy: refused a request without a valid credential", { present: token !== null });
    const message = token === null ? "missing bearer credential" : "invalid or revoked credential";
    sendOpenAiError(res, 401, "invalid_request_error", "invalid_api_key", message);
    return;
  }
  const fields = options.logFields(ref);
  const path = upstreamPathFor(req.url ?? "", options.basePath, options.upstreamPath);
  if (path === null) {
    sendOpenAiError(res, 404, "invalid_request_error", "not_found", `no such endpoint: ${req.method ?? ""} ${(req.url ?? "").slice(0, 200)}`);
    return;
  }
  const refusal = options.admit?.(ref);
  if (refusal) {
    options.logger?.info("model proxy: request refused", { ...fields, code: refusal.code, status: refusal.status });
    sendOpenAiError(res, refusal.status, "invalid_request_error", refusal.code, refusal.message);
    return;
  }
  guarded(options, fields, () => options.onRequest?.(ref));
  // Set, not resolved: a path such as "//elsewhere/x" must not change the upstream's host.
  const target = new URL(options.upstream);
  target.pathname = path.pathname;
  target.search = path.search;
  forward(options, agent, req, res, ref, fields, target);
}

/**
 * The upstream path and query for a local request target, or null if it lies outside the base
 * path. Dot segments (also `%2e`) are resolved first, so `/v1/../x` cannot step out of it.
 */
export function upstreamPathFor(target: string, basePath: string, upstreamPath: string): { pathname: string; search: string } | null {
  if (!target.startsWith("/") || target.startsWith("//")) return null;
  const url = new URL(target, "http://model-proxy.invalid");
  if (url.pathname !== basePath && !url.pathname.startsWith(`${basePath}/`)) return null;
  return { pathname: `${upstreamPath}${url.pathname.slice(basePath.length)}`, search: url.search };
}

function forward<T>(
  options: ResolvedModelProxyOptions<T>,
  agent: http.Agent,
  req: IncomingMessage,
  res: ServerResponse,
  ref: T,
  fields: LogFields,
  target: URL,
): void {
  const transport = target.protocol === "https:" ? https : http;
  const upstream = transport.request(target, { method: req.method, headers: upstreamRequestHeaders(req.headers, options.apiKey), agent });
  let clientGone = false;
  // Also true before the response's "close" is emitted (closeAllConnections destroys the socket first).
  const clientLeft = (): boolean => clientGone || req.socket.destroyed;

  upstream.on("socket", (socket: Socket) => watchConnect(upstream, socket, target.protocol === "https:", options.connectTimeoutMs));
  upstream.on("error", (error) => {
    // Drain what the client still sends, so its connection stays usable for the answer.
    req.unpipe(upstream);
    req.resume();
    if (clientLeft()) return;
    if (res.headersSent) {
      // Mid-stream: cut the client's response too, so it sees a broken stream, not a complete one.
      options.logger?.warn("model proxy: upstream failed mid-response", { ...fields, error });
      res.destroy();
      return;
    }
    const failure = describeUpstreamError(error, target.origin, options.connectTimeoutMs);
    options.logger?.warn("model proxy: model API unreachable", { ...fields, status: failure.status, reason: failure.message });
    guarded(options, fields, () => options.onUpstreamError?.(ref, failure));
    sendOpenAiError(res, failure.status, "server_error", failure.code, failure.message);
  });
  upstream.on("response", (upstreamRes) => relayResponse(options, upstreamRes, res, ref, fields, clientLeft));
  // The client went away before its response was complete: stop the upstream work too.
  res.on("close", () => {
    if (res.writableFinished) return;
    clientGone = true;
    upstream.destroy();
  });
  req.pipe(upstream);
}

/** Fails the request if the connection (with its TLS handshake) is not up within `timeoutMs`. */
function watchConnect(upstream: ClientRequest, socket: Socket, tls: boolean, timeoutMs: number): void {
  // A kept-alive socket is already connected.
  if (!socket.connecting) return;
  upstream.setNoDelay(true);
  const timer = setTimeout(() => {
    const error = Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: CONNECT_TIMEOUT_CODE });
    upstream.destroy(error);
  }, timeoutMs);
  const done = (): void => clearTimeout(timer);
  socket.once(tls ? "secureConnect" : "connect", done);
  socket.once("close", done);
}

function relayResponse<T>(
  options: ResolvedModelProxyOptions<T>,
  upstreamRes: IncomingMessage,
  res: ServerResponse,
  ref: T,
  fields: LogFields,
  clientLeft: () => boolean,
): void {
  res.writeHead(upstreamRes.statusCode ?? 502, clientResponseHeaders(upstreamRes.headers));
  res.flushHeaders();
  const counter = usageCounterFor(upstreamRes, (usage) => guarded(options, fields, () => options.onUsage?.(ref, usage)));
  upstreamRes.on("data", (chunk: Buffer) => {
    // The client first, the accounting after.
    if (!res.write(chunk)) upstreamRes.pause();
    counter?.push(chunk);
  });
  res.on("drain", () => upstreamRes.resume());
  upstreamRes.on("end", () => {
    counter?.end();
    res.end();
  });
  upstreamRes.on("error", () => {});
  upstreamRes.on("close", () => {
    // Complete, or cut by the proxy itself because the client left.
    if (upstreamRes.complete || clientLeft()) return;
    options.logger?.warn("model proxy: the model API cut its response short", fields);
    res.destroy();
  });
}

interface UsageCounter {
  push(chunk: Buffer): void;
  end(): void;
}

/** Reads usage off an SSE stream as it passes, or off a JSON body at its end; null for anything else. */
function usageCounterFor(upstreamRes: IncomingMessage, report: (usage: TokenUsage) => void): UsageCounter | null {
  const encoding = upstreamRes.headers["content-encoding"];
  if (encoding !== undefined && encoding !== "identity") return null;
  const type = (upstreamRes.headers["content-type"] ?? "").toLowerCase();
  if (type.startsWith("text/event-stream")) {
    const reader = new SseUsageReader();
    return {
      push: (chunk) => reader.push(chunk).forEach(report),
      end: () => {},
    };
  }
  const status = upstreamRes.statusCode ?? 0;
  if (!type.startsWith("application/json") || status < 200 || status >= 300) return null;
  let chunks: Buffer[] | null = [];
  let size = 0;
  return {
    push: (chunk) => {
      size += chunk.length;
      if (size > MAX_JSON_USAGE_BYTES) chunks = null;
      else chunks?.push(chunk);
    },
    end: () => {
      if (chunks === null) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return;
      }
      const usage = typeof body === "object" && body !== null ? readUsage((body as { usage?: unknown }).usage) : null;
      if (usage) report(usage);
    },
  };
}

/** Runs a caller's callback; one that throws is logged and must not take the proxy down. */
function guarded<T>(options: ResolvedModelProxyOptions<T>, fields: LogFields, callback: () => void): void {
  try {
    callback();
  } catch (error) {
    options.logger?.error("model proxy: a callback threw", { ...fields, error });
  }
}
