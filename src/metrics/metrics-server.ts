/** Serves a metrics registry as Prometheus text on GET /metrics (ALIVE_CODEX_METRICS_LISTEN). */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";

export interface MetricsServer {
  /** Where it listens (the port chosen when 0 was asked for). */
  address: { host: string; port: number };
  close(): Promise<void>;
}

export async function startMetricsServer(
  listen: { host: string; port: number },
  registry: Registry,
  log: Logger,
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) =>
        res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? undefined : text),
      (error: unknown) => {
        log.error("metrics: collecting failed", { error: errorMessage(error) });
        res.writeHead(500, { "content-type": "text/plain" }).end("collecting the metrics failed\n");
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info("serving Prometheus metrics", { host: listen.host, port, path: "/metrics" });
  return {
    address: { host: listen.host, port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
