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
 * it arrives (SSE is never buffered; forward.ts). Token usage is read off every response as it
 * passes; when the client goes away first, the response is still read to its end for its usage
 * (attributed to the ref, after its turn has ended if need be; drain.ts), so a tenant cannot dodge
 * metering by hanging up. An upstream that cannot be reached is answered within `connectTimeoutMs`
 * with a 502/504 naming why, and reported, so the turn fails in seconds instead of codex
 * reconnecting until its deadline.
 *
 * The caller listens the returned server (on a per-workspace Unix socket) and closes it; closing
 * it also drops the kept-alive upstream connections.
 */
import http from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { LogFields } from "../log.js";
import { checkRequestBody } from "./body-policy.js";
import { guarded, type Exchange, type ProxyState } from "./exchange.js";
import { forward } from "./forward.js";
import { bearerToken } from "./headers.js";
import { ConcurrencySlots, RateLimiter } from "./limits.js";
import {
  resolveModelProxyOptions,
  type ModelProxyOptions,
  type RefusalReason,
  type ResolvedModelProxyOptions,
} from "./options.js";
import { REFUSED_HEADER, refuseUpgrade, sendOpenAiError } from "./replies.js";
import { readBody } from "./request-body.js";
import { isRouteAllowed } from "./routes.js";

export type { ModelProxyOptions, ProxyRefusal, RefusalReason, UpstreamFailure } from "./options.js";
export type { TokenUsage } from "./sse-usage.js";

export function createModelProxy<T>(options: ModelProxyOptions<T>): Server {
  const resolved = resolveModelProxyOptions(options);
  const isHttps = resolved.upstream.protocol === "https:";
  const state: ProxyState = {
    // Bounded: past maxSockets a request waits in the agent for a connection instead of opening one.
    agent: new (isHttps ? https : http).Agent({
      keepAlive: true,
      maxSockets: resolved.maxSockets,
      maxFreeSockets: resolved.maxFreeSockets,
    }),
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

async function handleRequest<T>(
  options: ResolvedModelProxyOptions<T>,
  state: ProxyState,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
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
    refuse(
      exchange,
      403,
      "path",
      `${method} ${exchange.path.slice(0, 200)} is not an endpoint the model proxy forwards (allowed: ${options.routes.map((r) => `${r.method} ${options.basePath}${r.path}`).join(", ")})`,
    );
    return;
  }
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
    refuse(
      exchange,
      415,
      "content_encoding",
      `request bodies must be sent uncompressed (got content-encoding ${JSON.stringify(encoding.slice(0, 40))})`,
    );
    return;
  }
  // The client may leave while its request waits for a slot or its body.
  const left = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) left.abort();
  });
  const release = await state.slots.acquire(options.turnKey(ref), left.signal);
  if (release === null) {
    if (!left.signal.aborted)
      refuse(
        exchange,
        429,
        "concurrency",
        `too many model requests of this turn at once (${options.concurrencyPerTurn} in flight, ${options.queuePerTurn} waiting)`,
      );
    return;
  }
  let handedOver = false;
  try {
    const body = await readBody(req, options.maxBodyBytes, left.signal);
    if (body === "aborted") return;
    if (body === "too_large") {
      res.setHeader("connection", "close");
      refuse(
        exchange,
        413,
        "body_too_large",
        `the request body is larger than the model proxy's limit of ${options.maxBodyBytes} bytes`,
      );
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
      refuse(
        exchange,
        429,
        "rate_limited",
        `this workspace sent more than ${options.ratePerMinute} model requests a minute. Please try again in ${seconds}s.`,
        "rate_limit_exceeded",
        { "retry-after": String(seconds) },
      );
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
function refuse<T>(
  exchange: Exchange<T>,
  status: number,
  reason: RefusalReason,
  message: string,
  code: string = reason,
  extraHeaders: Record<string, string> = {},
): void {
  const { options, state, req, res, ref, fields } = exchange;
  noteRefusal(options, state, ref, fields, reason, status, req.method ?? "", exchange.path, message);
  // Whatever of the body is unread is drained, so the connection stays usable for the answer.
  req.resume();
  sendOpenAiError(res, status, "invalid_request_error", code, message, { [REFUSED_HEADER]: reason, ...extraHeaders });
}

function noteRefusal<T>(
  options: ResolvedModelProxyOptions<T>,
  state: ProxyState,
  ref: T | null,
  fields: LogFields,
  reason: RefusalReason,
  status: number,
  method: string,
  path: string,
  message?: string,
): void {
  const key = `${ref === null ? "" : options.workspaceKey(ref)}\u0000${reason}`;
  if (!state.logged.has(key)) {
    state.logged.add(key);
    options.logger?.warn("model proxy: request refused (logged once per workspace and reason)", {
      ...fields,
      reason,
      status,
      method: method.slice(0, 16),
      path: path.slice(0, 200),
      ...(message ? { detail: message } : {}),
    });
  }
  guarded(options, fields, () => options.onRefusal?.(ref, reason));
}

/** The path of a request target for a log line: no query (it could hold anything), at most 200 characters. */
function pathForLog(target: string | undefined): string {
  return (target ?? "").split("?")[0]?.slice(0, 200) ?? "";
}

/**
 * The upstream path and query for a local request target, or null if it lies outside the base
 * path. Dot segments (also `%2e`) are resolved first, so `/v1/../x` cannot step out of it.
 */
export function upstreamPathFor(
  target: string,
  basePath: string,
  upstreamPath: string,
): { pathname: string; search: string } | null {
  if (!target.startsWith("/") || target.startsWith("//")) return null;
  const url = new URL(target, "http://model-proxy.invalid");
  if (url.pathname !== basePath && !url.pathname.startsWith(`${basePath}/`)) return null;
  return { pathname: `${upstreamPath}${url.pathname.slice(basePath.length)}`, search: url.search };
}
