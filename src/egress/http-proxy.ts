/**
 * A workspace's HTTP forward proxy: one per workspace, listening on that workspace's Unix socket
 * (the container's only way out, through a forwarder on its loopback). It tunnels CONNECT host:port
 * and forwards absolute-form http:// requests, each under the workspace's egress policy (see
 * destination.ts for the order of checks). Refusals are 403 with `x-alive-egress-refused: <reason>`.
 * Only the operator's ports are connected to (443 and 80 by default; an internal destination keeps
 * its own). Each tunnel and forwarded request holds an upstream connection: it is admitted against
 * the workspace's bounds first (connection-limits.ts; 429/503 with `x-alive-egress-error`), and
 * cut when it idles or outlives its maximum (upstream-watch.ts), or when closeUpstreams() is called.
 * Request paths, queries and headers are never logged: they may hold credentials. What the client is
 * told never names what a name resolved to; the log may, and its lines are rate-limited per
 * workspace (a tenant decides how many requests fail).
 */
import http from "node:http";
import { errorMessage } from "../errors.js";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream";
import { parseAbsoluteTarget, parseConnectTarget } from "./destination.js";
import type { EgressProxyOptions, TunnelTakeover } from "./proxy-options.js";
import { ERROR_HEADER, answer, answerRaw } from "./proxy-replies.js";
import { EgressProxyServer } from "./proxy-server.js";
import { createUpstreamOpener } from "./upstream-opener.js";
import { withoutHopByHop } from "./hop-by-hop.js";

export type { EgressProxyOptions, UpstreamKind } from "./proxy-options.js";
export { ERROR_HEADER, REFUSED_HEADER, type EgressErrorCode } from "./proxy-replies.js";
export { EgressProxyServer } from "./proxy-server.js";

export function createEgressProxy(options: EgressProxyOptions): EgressProxyServer {
  const server = new EgressProxyServer();
  const { openUpstream, superviseUpstream } = createUpstreamOpener(options, server);

  server.on("connect", (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    server.track(client);
    client.on("error", () => client.destroy());
    handleConnect(req.url ?? "", client, head).catch((error: unknown) => {
      options.log.error("egress CONNECT failed unexpectedly", { error });
      client.destroy();
    });
  });

  async function handleConnect(authority: string, client: Duplex, head: Buffer): Promise<void> {
    const target = parseConnectTarget(authority);
    if (typeof target === "string")
      return answerRaw(client, { status: 400, header: ERROR_HEADER, code: "bad_request", message: target });
    const upstream = await openUpstream("tunnel", target, closedSignal(client, true));
    if (!("pipe" in upstream)) return answerRaw(client, upstream);
    // A host with a secret binding is intercepted (its leaf certificate is minted here, before the 200).
    let takeover: TunnelTakeover | null = null;
    try {
      takeover = options.intercept ? await options.intercept(target) : null;
    } catch (error) {
      // Never a plain tunnel instead: the client would reach the host without its credential.
      upstream.destroy();
      return answerRaw(client, {
        status: 502,
        header: ERROR_HEADER,
        code: "upstream_tls",
        message: `${target.host} port ${target.port}: could not set up the brokered connection (${errorMessage(error)})`,
      });
    }
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    establishTunnel(client, upstream, head, takeover);
  }

  /**
   * The tunnel proper, once the destination is decided and connected: 200, then the bytes both
   * ways, as they are, until either side closes, the tunnel idles or outlives its maximum, or
   * closeUpstreams() cuts it. A tunnel to a host with a secret binding is taken over instead of
   * piped (TLS terminated, the binding applied: broker/intercept.ts), under the same watch.
   */
  function establishTunnel(client: Duplex, upstream: Duplex, head: Buffer, takeover: TunnelTakeover | null): void {
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    superviseUpstream("tunnel", upstream, [client, upstream], [client, upstream]);
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (takeover) {
      // The takeover ends both itself: an upstream that closes may still owe the client an answer (a 502).
      client.on("close", () => upstream.destroy());
      upstream.on("error", () => undefined);
      takeover(client, upstream, head);
      return;
    }
    client.on("close", closeBoth);
    upstream.on("error", closeBoth).on("close", closeBoth);
    if (head.length > 0) upstream.write(head);
    // pipe() passes on a half-close (end) each way; a socket ended both ways closes itself.
    upstream.pipe(client);
    client.pipe(upstream);
  }

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    handleRequest(req, res).catch((error: unknown) => {
      options.log.error("egress request failed unexpectedly", { error });
      res.destroy();
    });
  });

  async function handleRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const parsed = parseAbsoluteTarget(req.url ?? "");
    if (typeof parsed === "string")
      return answer(req, res, { status: 400, header: ERROR_HEADER, code: "bad_request", message: parsed });
    const upstream = await openUpstream("request", parsed.target, closedSignal(res));
    if (!("pipe" in upstream)) return answer(req, res, upstream);
    if (res.destroyed) {
      upstream.destroy();
      return;
    }
    superviseUpstream("request", upstream, [upstream], [upstream, res]);
    const headers = { ...withoutHopByHop(req.headers), host: parsed.authority };
    // No agent and our own, already connected socket: the request goes to the address we checked.
    const forward = http.request({
      method: req.method,
      path: parsed.path,
      headers,
      createConnection: () => upstream as never,
    });
    forward.on("response", (response) => {
      res.writeHead(response.statusCode ?? 502, response.statusMessage, withoutHopByHop(response.headers));
      pipeline(response, res, () => upstream.destroy());
    });
    forward.on("error", (error) => {
      upstream.destroy();
      if (res.headersSent) res.destroy();
      else
        answer(req, res, {
          status: 502,
          header: ERROR_HEADER,
          code: "upstream_failed",
          message: `${parsed.target.host} port ${parsed.target.port}: ${error.message}`,
        });
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    pipeline(req, forward, (error) => {
      if (error) upstream.destroy();
    });
  }

  return server;
}

/**
 * Aborts when `stream` closes (or ends, for a tunnel's client: over a Unix socket a client that
 * leaves only ends, and nothing else is read from it before its tunnel is up): a lookup for a
 * client that went away is cancelled, freeing its slot.
 */
function closedSignal(stream: Duplex | http.ServerResponse, alsoOnEnd = false): AbortSignal {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  if (stream.destroyed) abort();
  stream.once("close", abort);
  if (alsoOnEnd) stream.once("end", abort);
  return controller.signal;
}
