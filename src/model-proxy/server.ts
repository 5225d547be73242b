/**
 * The model proxy: what codex inside a workspace container talks to instead of the model API.
 *
 * It checks the per-turn credential the container was given, and forwards only what codex needs:
 * the (method, path) pairs of routes.ts, a fixed set of headers (headers.ts), and a body the body
 * policy passes for the workspace's egress (body-policy.ts). Each turn holds at most a few upstream
 * requests at once and each workspace a bounded rate (limits.ts). Anything else is answered by the
 * proxy itself with `x-alive-model-refused: <reason>`, logged once per workspace and reason, and
 * reported, and never reaches the upstream. It swaps in the real key (and the operator's
 * organisation and project), forwards to the upstream and streams the answer back chunk by chunk as
 * it arrives (SSE is never buffered). Token usage is read off every response as it passes; when the
 * client goes away first, the response is still read to its end for its usage (attributed to the
 * ref, after its turn has ended if need be), so a tenant cannot dodge metering by hanging up. An
 * upstream that cannot be reached is answered within `connectTimeoutMs` with a 502/504 naming
 * why, and reported, so the turn fails in seconds instead of codex reconnecting until its deadline.
 *
 * The caller listens the returned server (on a per-workspace Unix socket) and closes it; closing
 * it also drops the kept-alive upstream connections.
 */
import http from "node:http";
import type { ClientRequest, IncomingMessage, Server, ServerResponse } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { LogFields } from "../log.js";
import { checkRequestBody } from "./body-policy.js";
import { clientResponseHeaders, bearerToken, upstreamRequestHeaders } from "./headers.js";
import { ConcurrencySlots, RateLimiter, type SlotRelease } from "./limits.js";
import { resolveModelProxyOptions, type ModelProxyOptions, type RefusalReason, type ResolvedModelProxyOptions } from "./options.js";
import { CONNECT_TIMEOUT_CODE, REFUSED_HEADER, describeUpstreamError, refuseUpgrade, sendOpenAiError } from "./replies.js";
import { JsonFieldReader } from "./json-fields.js";
import { isRouteAllowed } from "./routes.js";
import { SseUsageReader, readUsage, type TokenUsage } from "./sse-usage.js";

export type { ModelProxyOptions, ProxyRefusal, RefusalReason, UpstreamFailure } from "./options.js";
export type { TokenUsage } from "./sse-usage.js";

/** What one proxy keeps across requests. */
interface ProxyState {
  agent: http.Agent;
  slots: ConcurrencySlots;
  rate: RateLimiter;
  /** Workspace and reason pairs already logged. */
  logged: Set<string>;
}

export function createModelProxy<T>(options: ModelProxyOptions<T>): Server {
  const resolved = resolveModelProxyOptions(options);
  const isHttps = resolved.upstream.protocol === "https:";
  const state: ProxyState = {
    // Bounded: past maxSockets a request waits in the agent for a connection instead of opening one.
    agent: new (isHttps ? https : http).Agent({ keepAlive: true, maxSockets: resolved.maxSockets, maxFreeSockets: resolved.maxFreeSockets }),
    slots: new ConcurrencySlots(resolved.concurrencyPerTurn, resolved.queuePerTurn),
    rate: new RateLimiter(resolved.ratePerMinute),
    logged: new Set(),
  };
  const server = http.createServer({ noDelay: true });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    handleRequest(resolved, state, req, res).catch((error: unknown) => {
      resolved.logger?.error("model proxy: request handling failed", { error });
      sendOpenAiError(res, 500, "server_error", "internal_error", "the model proxy failed to handle the request");
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Socket) => {
    noteRefusal(resolved, state, null, {}, "websocket", 426, req.method ?? "", pathForLog(req.url));
    refuseUpgrade(socket);
  });
  server.on("close", () => state.agent.destroy());
  return server;
}

/** One request's context once its credential checked out. */
interface Exchange<T> {
  options: ResolvedModelProxyOptions<T>;
  state: ProxyState;
  req: IncomingMessage;
  res: ServerResponse;
  ref: T;
  fields: LogFields;
  /** The path relative to the base path, for log lines. */
  path: string;
}

async function handleRequest<T>(options: ResolvedModelProxyOptions<T>, state: ProxyState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? "";
  const token = bearerToken(req.headers.authorization);
  const ref = token === null ? null : options.authorize(token);
  if (ref === null || ref === undefined) {
    // Never log the token: a wrong one may be a real key pasted by mistake.
    options.logger?.debug("model proxy: refused a request without a valid credential", { present: token !== null });
    guarded(options, {}, () => options.onRefusal?.(null, "credential"));
    const message = token === null ? "missing bearer credential" : "invalid or revoked credential";
    sendOpenAiError(res, 401, "invalid_request_error", "invalid_api_key", message, { [REFUSED_HEADER]: "credential" });
    return;
  }
  const fields = options.logFields(ref);
  const local = upstreamPathFor(req.url ?? "", options.basePath, "");
  const exchange: Exchange<T> = { options, state, req, res, ref, fields, path: local?.pathname ?? pathForLog(req.url) };
  if (local === null || !isRouteAllowed(options.routes, method, local.pathname)) {
    refuse(exchange, 403, "path", `${method} ${exchange.path.slice(0, 200)} is not an endpoint the model proxy forwards (allowed: ${options.routes.map((r) => `${r.method} ${options.basePath}${r.path}`).join(", ")})`);
    return;
  }
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
    refuse(exchange, 415, "content_encoding", `request bodies must be sent uncompressed (got content-encoding ${JSON.stringify(encoding.slice(0, 40))})`);
    return;
  }
  // The client may leave while its request waits for a slot or its body.
  const left = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) left.abort();
  });
  const release = await state.slots.acquire(options.turnKey(ref), left.signal);
  if (release === null) {
    if (!left.signal.aborted) refuse(exchange, 429, "concurrency", `too many model requests of this turn at once (${options.concurrencyPerTurn} in flight, ${options.queuePerTurn} waiting)`);
    return;
  }
  let handedOver = false;
  try {
    const body = await readBody(req, options.maxBodyBytes, left.signal);
    if (body === "aborted") return;
    if (body === "too_large") {
      res.setHeader("connection", "close");
      refuse(exchange, 413, "body_too_large", `the request body is larger than the model proxy's limit of ${options.maxBodyBytes} bytes`);
      return;
    }
    let forwarded = body;
    if (body.length > 0) {
      const verdict = checkRequestBody(body, { egress: options.egress(ref), hostedTools: options.hostedTools });
      if (!verdict.ok) {
        refuse(exchange, verdict.reason === "invalid_body" ? 400 : 403, verdict.reason, verdict.message);
        return;
      }
      forwarded = verdict.body;
    }
    const refusal = options.admit?.(ref);
    if (refusal) {
      refuse(exchange, refusal.status, refusal.code, refusal.message, refusal.code);
      return;
    }
    const waitMs = state.rate.take(options.workspaceKey(ref));
    if (waitMs > 0) {
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      refuse(exchange, 429, "rate_limited", `this workspace sent more than ${options.ratePerMinute} model requests a minute. Please try again in ${seconds}s.`, "rate_limit_exceeded", { "retry-after": String(seconds) });
      return;
    }
    guarded(options, fields, () => options.onRequest?.(ref));
    // Set, not resolved: a path such as "//elsewhere/x" must not change the upstream's host.
    const target = new URL(options.upstream);
    target.pathname = `${options.upstreamPath}${local.pathname}`;
    target.search = local.search;
    handedOver = true;
    forward(exchange, target, method, forwarded, release);
  } finally {
    if (!handedOver) release();
  }
}

/** Answers a request the proxy will not forward: logged once per workspace and reason, reported, with the reason header. */
function refuse<T>(exchange: Exchange<T>, status: number, reason: RefusalReason, message: string, code: string = reason, extraHeaders: Record<string, string> = {}): void {
  const { options, state, req, res, ref, fields } = exchange;
  noteRefusal(options, state, ref, fields, reason, status, req.method ?? "", exchange.path, message);
  // Whatever of the body is unread is drained, so the connection stays usable for the answer.
  req.resume();
  sendOpenAiError(res, status, "invalid_request_error", code, message, { [REFUSED_HEADER]: reason, ...extraHeaders });
}

function noteRefusal<T>(options: ResolvedModelProxyOptions<T>, state: ProxyState, ref: T | null, fields: LogFields, reason: RefusalReason, status: number, method: string, path: string, message?: string): void {
  const key = `${ref === null ? "" : options.workspaceKey(ref)}\u0000${reason}`;
  if (!state.logged.has(key)) {
    state.logged.add(key);
    options.logger?.warn("model proxy: request refused (logged once per workspace and reason)", { ...fields, reason, status, method: method.slice(0, 16), path: path.slice(0, 200), ...(message ? { detail: message } : {}) });
  }
  guarded(options, fields, () => options.onRefusal?.(ref, reason));
}

/** The path of a request target for a log line: no query (it could hold anything), at most 200 characters. */
function pathForLog(target: string | undefined): string {
  return (target ?? "").split("?")[0]?.slice(0, 200) ?? "";
}

/** Reads a request body of at most `maxBytes`; stops reading past it. */
function readBody(req: IncomingMessage, maxBytes: number, signal: AbortSignal): Promise<Buffer | "too_large" | "aborted"> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.resolve("too_large");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | "too_large" | "aborted"): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAborted);
      signal.removeEventListener("abort", onAborted);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) finish("too_large");
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onAborted = (): void => finish("aborted");
    if (signal.aborted) return finish("aborted");
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAborted);
    signal.addEventListener("abort", onAborted, { once: true });
  });
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

/**
 * A kept-alive connection the model API closed while it sat idle (its keep-alive timeout ran out
 * just as the proxy reused it): the request was never read, so it goes once more on a new
 * connection. Node's own advice for `request.reusedSocket`; seen as turns failing
 * model_unreachable (ECONNRESET) after a quiet spell of 5 s or more.
 */
function isStaleKeepAlive(upstream: ClientRequest, error: NodeJS.ErrnoException, responded: boolean): boolean {
  return upstream.reusedSocket && !responded && (error.code === "ECONNRESET" || error.code === "EPIPE");
}

function forward<T>(exchange: Exchange<T>, target: URL, method: string, body: Buffer, release: SlotRelease, retried = false): void {
  const { options, state, req, res, ref, fields } = exchange;
  const transport = target.protocol === "https:" ? https : http;
  const hasBody = body.length > 0 || (method !== "GET" && method !== "DELETE");
  const identity = { apiKey: options.apiKey, organization: options.organization, project: options.project };
  const upstream = transport.request(target, { method, headers: upstreamRequestHeaders(req.headers, identity, hasBody ? body.length : null), agent: state.agent, ...(options.lookup ? { lookup: options.lookup } : {}) });
  const drain = new Drain(upstream, options.drainIdleMs);
  let done = false;
  // The slot is held until the upstream's answer has ended, also while it is drained for usage.
  const finish = (): void => {
    if (done) return;
    done = true;
    drain.stop();
    release();
  };
  // Also true before the response's "close" is emitted (closeAllConnections destroys the socket first).
  const clientLeft = (): boolean => drain.draining || req.socket.destroyed;

  let responded = false;
  upstream.on("socket", (socket: Socket) => watchConnect(upstream, socket, target.protocol === "https:", options.connectTimeoutMs));
  upstream.on("error", (error: NodeJS.ErrnoException) => {
    if (!retried && !clientLeft() && isStaleKeepAlive(upstream, error, responded)) {
      // The slot stays held: the second attempt releases it.
      done = true;
      drain.stop();
      options.logger?.debug("model proxy: a kept-alive connection was closed by the model API; sending again on a new one", { ...fields, error: error.code });
      forward(exchange, target, method, body, release, true);
      return;
    }
    finish();
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
  upstream.on("close", finish);
  upstream.on("response", (upstreamRes) => {
    responded = true;
    upstreamRes.on("close", finish);
    relayResponse(exchange, upstreamRes, drain);
  });
  // The client went away before its response was complete: the upstream's answer is still read
  // to its end (or until it goes quiet) so its tokens are counted.
  res.on("close", () => {
    if (res.writableFinished || done) return;
    options.logger?.debug("model proxy: the client left; reading the response to its end for its usage", fields);
    drain.start();
  });
  upstream.end(body);
}

/** Reading an upstream response whose client has gone: cut once it is quiet for `idleMs`. */
class Drain {
  draining = false;
  #timer: NodeJS.Timeout | null = null;
  #response: IncomingMessage | null = null;

  constructor(
    private readonly upstream: ClientRequest,
    private readonly idleMs: number,
  ) {}

  attach(response: IncomingMessage): void {
    this.#response = response;
    if (this.draining) response.resume();
  }

  start(): void {
    if (this.draining) return;
    this.draining = true;
    this.#response?.resume();
    this.touch();
  }

  /** Data arrived: the idle clock starts again. */
  touch(): void {
    if (!this.draining) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.upstream.destroy(), this.idleMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
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

function relayResponse<T>(exchange: Exchange<T>, upstreamRes: IncomingMessage, drain: Drain): void {
  const { options, res, ref, fields } = exchange;
  drain.attach(upstreamRes);
  if (!drain.draining) {
    res.writeHead(upstreamRes.statusCode ?? 502, clientResponseHeaders(upstreamRes.headers));
    res.flushHeaders();
  }
  const counter = usageCounterFor(upstreamRes, (usage) => guarded(options, fields, () => options.onUsage?.(ref, usage)));
  upstreamRes.on("data", (chunk: Buffer) => {
    // The client first, the accounting after.
    if (drain.draining) drain.touch();
    else if (!res.write(chunk)) upstreamRes.pause();
    counter?.push(chunk);
  });
  res.on("drain", () => upstreamRes.resume());
  upstreamRes.on("end", () => {
    counter?.end();
    if (!drain.draining) res.end();
  });
  upstreamRes.on("error", () => {});
  upstreamRes.on("close", () => {
    // Complete, or read to its end (or cut when quiet) after the client left.
    if (upstreamRes.complete || drain.draining || exchange.req.socket.destroyed) return;
    options.logger?.warn("model proxy: the model API cut its response short", fields);
    res.destroy();
  });
}

interface UsageCounter {
  push(chunk: Buffer): void;
  end(): void;
}

/** Reads usage off an SSE stream or a JSON body as it passes (nothing of either is kept but usage); null for anything else. */
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
  // Read as it passes: only the top-level `usage` is kept, however large the body.
  const reader = new JsonFieldReader([["usage"]]);
  return {
    push: (chunk) => reader.push(chunk),
    end: () => {
      const usage = readUsage(reader.end()[0]);
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
