/**
 * Alive's own API, reverse-proxied. Inside a workspace, ALIVE_API_URL is a loopback URL; each
 * request to it reaches this server through the container's forwarder and is passed on to the
 * real API (an internal destination), path and headers as they came. Alive's token is added here
 * (api-tokens.ts): inside, ALIVE_MCP_TOKEN holds only a placeholder, which is swapped for the token
 * where a request header carries it, and a request without Authorization gets `Bearer <token>`. So a
 * plain HTTP client that ignores proxy variables, such as Node's fetch in Alive's MCP servers, works
 * unchanged, and no process of the workspace can read the token.
 *
 * The API is told which workspace called: `x-alive-workspace: <workspaceId>` is set here on every
 * request, over whatever the tenant sent. Headers a tenant could use to pass itself off as another
 * client, user or origin (the forwarding family, client-IP headers, user headers that
 * authenticating proxies set, and every other `x-alive-*`) are dropped: what the API sees of the
 * caller's identity is its own Authorization and the workspace this proxy serves.
 */
import http, {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import https from "node:https";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { LogLimiter, limitedLog } from "../shared/log-limiter.js";
import { clientResponseHeaders } from "../model-proxy/headers.js";
import { LIMIT_HEADER, type Admission } from "./connection-limits.js";
import { withApiCredential, type ApiCredential } from "./api-tokens.js";

/** The header naming the calling workspace, set by the proxy alone. */
export const WORKSPACE_HEADER = "x-alive-workspace";

/** Identity and origin headers a tenant could spoof; never forwarded. */
const SPOOFABLE_HEADERS: ReadonlySet<string> = new Set([
  "forwarded",
  "via",
  "x-real-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "true-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-original-forwarded-for",
  "x-user",
  "x-user-id",
  "x-userid",
  "x-user-email",
  "x-remote-user",
  "remote-user",
  "x-authenticated-user",
  "x-authenticated-userid",
  "x-auth-user",
  "x-workspace-id",
  "x-tenant-id",
]);
/** Whole families: x-forwarded-for/-host/-proto/-port/-user..., x-auth-request-* (oauth2-proxy), every x-alive-*. */
const SPOOFABLE_PREFIXES = ["x-forwarded-", "x-auth-request-", "x-alive-"];

/** Upstream connections per workspace, and how many of them are kept idle for reuse. */
const API_MAX_SOCKETS = 16;
const API_MAX_FREE_SOCKETS = 4;

export interface ApiProxyOptions {
  /** The real API's URL (ALIVE_API_URL as the operator gave it); only its origin is used. */
  target: string;
  /** The workspace this proxy serves, sent as x-alive-workspace. */
  workspaceId: string;
  log: Logger;
  connectTimeoutMs?: number;
  /** Rate-limits the failure lines (a client that hangs up causes one), under `logKey` (the workspace). Default: one of its own. */
  logLimiter?: LogLimiter;
  logKey?: string;
  /** Asked for each request before it is forwarded; a refusal is answered instead (a workspace's requests in flight are bounded). */
  admitRequest?: () => Admission;
  /** Alive's token for this workspace (api-tokens.ts), added to every request; null: none is added. */
  credential?: () => ApiCredential | null;
}

/** The request headers sent to Alive's API: the caller's, less hop-by-hop and spoofable ones, with the workspace named. */
export function apiRequestHeaders(
  headers: IncomingHttpHeaders,
  workspaceId: string,
  host: string,
): OutgoingHttpHeaders {
  const out = clientResponseHeaders(headers);
  for (const name of Object.keys(out)) {
    if (SPOOFABLE_HEADERS.has(name) || SPOOFABLE_PREFIXES.some((prefix) => name.startsWith(prefix))) delete out[name];
  }
  out.host = host;
  out[WORKSPACE_HEADER] = workspaceId;
  return out;
}

export function createApiProxy(options: ApiProxyOptions): http.Server {
  const target = new URL(options.target);
  const client = target.protocol === "https:" ? https : http;
  // Bounded: a workspace's requests past it wait for a connection instead of each opening one.
  const agent = new client.Agent({
    keepAlive: true,
    maxSockets: API_MAX_SOCKETS,
    maxFreeSockets: API_MAX_FREE_SOCKETS,
  });
  const log = limitedLog(options.log, options.logLimiter ?? new LogLimiter(), options.logKey ?? "");
  const server = http.createServer((req, res) => forward(req, res));
  server.on("close", () => agent.destroy());

  /** The token goes on here, past everything the tenant sent: it never reaches the workspace. */
  function withCredential(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
    const credential = options.credential?.();
    if (credential) withApiCredential(headers as Record<string, string | string[] | number | undefined>, credential);
    return headers;
  }

  function forward(req: IncomingMessage, res: ServerResponse): void {
    const slot = options.admitRequest?.();
    if (slot && !slot.ok) {
      const text = `alive-codex: ${slot.reason}: ${slot.message}\n`;
      res.writeHead(slot.status, {
        "content-type": "text/plain; charset=utf-8",
        "content-length": Buffer.byteLength(text),
        [LIMIT_HEADER]: slot.reason,
        "retry-after": "1",
      });
      res.end(text);
      req.resume();
      return;
    }
    if (slot) res.once("close", slot.release);
    const upstream = client.request({
      protocol: target.protocol,
      hostname: target.hostname.replace(/^\[|\]$/g, ""),
      port: target.port === "" ? undefined : Number(target.port),
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers: withCredential(apiRequestHeaders(req.headers, options.workspaceId, target.host)),
      agent,
      timeout: options.connectTimeoutMs ?? 10_000,
    });
    upstream.on("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, clientResponseHeaders(answer.headers));
      answer.pipe(res);
      answer.on("error", () => res.destroy());
    });
    upstream.on("timeout", () => upstream.destroy(new Error("no answer in time")));
    upstream.on("error", (error) => {
      log.warn("api_failed", "Alive's API did not answer a workspace's request", {
        target: target.origin,
        error: errorMessage(error),
      });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(502, { "content-type": "text/plain; charset=utf-8", connection: "close" });
      res.end(`alive-codex: Alive's API at ${target.origin} is unreachable: ${errorMessage(error)}\n`);
    });
    // The caller went away before the answer was complete: stop the upstream request too.
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  return server;
}
