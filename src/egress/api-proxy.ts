/**
 * Alive's own API, reverse-proxied. Inside a workspace, ALIVE_API_URL is a loopback URL; each
 * request to it reaches this server through the container's forwarder and is passed on to the
 * real API (an internal destination), path and headers as they came (the caller's own
 * Authorization included: Alive's MCP servers authenticate themselves). So a plain HTTP client
 * that ignores proxy variables, such as Node's fetch in Alive's MCP servers, works unchanged.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { LogLimiter, limitedLog } from "../shared/log-limiter.js";
import { clientResponseHeaders } from "../model-proxy/headers.js";

export interface ApiProxyOptions {
  /** The real API's URL (ALIVE_API_URL as the operator gave it); only its origin is used. */
  target: string;
  log: Logger;
  connectTimeoutMs?: number;
  /** Rate-limits the failure lines (a client that hangs up causes one), under `logKey` (the workspace). Default: one of its own. */
  logLimiter?: LogLimiter;
  logKey?: string;
}

export function createApiProxy(options: ApiProxyOptions): http.Server {
  const target = new URL(options.target);
  const client = target.protocol === "https:" ? https : http;
  const agent = new client.Agent({ keepAlive: true });
  const log = limitedLog(options.log, options.logLimiter ?? new LogLimiter(), options.logKey ?? "");
  const server = http.createServer((req, res) => forward(req, res));
  server.on("close", () => agent.destroy());

  function forward(req: IncomingMessage, res: ServerResponse): void {
    const headers = clientResponseHeaders(req.headers);
    delete headers.host;
    const upstream = client.request({
      protocol: target.protocol,
      hostname: target.hostname.replace(/^\[|\]$/g, ""),
      port: target.port === "" ? undefined : Number(target.port),
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers: { ...headers, host: target.host },
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
      log.warn("api_failed", "Alive's API did not answer a workspace's request", { target: target.origin, error: errorMessage(error) });
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
