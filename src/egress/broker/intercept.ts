/**
 * A brokered tunnel: the egress proxy has answered a CONNECT to a host with a secret binding and
 * connected to the vetted address; here the client's TLS is terminated with a leaf of the broker's
 * CA, a TLS connection of our own is made to the upstream over that one socket (verified against
 * the upstream trust, never the broker's CA), and the client's HTTP/1.1 requests are passed on one
 * after another with the binding applied (forward-headers.ts). Bodies stream both ways with
 * backpressure. Only HTTP/1.1 is offered to the client (ALPN), so an HTTP/2 client falls back.
 *
 * No other upstream connection is ever opened: when the upstream closes, the client's connection
 * ends after the response in progress. A TLS failure to the upstream is answered as a 502 with
 * `x-alive-egress-error: upstream_tls` naming the host and why; an upstream that fails before its
 * response starts, as a 502 `upstream_failed`; one that fails mid-response cuts the client.
 * Request paths and header values (the binding's value above all) are never logged.
 */
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream";
import tls from "node:tls";
import type { Target } from "../destination.js";
import { ERROR_HEADER } from "../proxy-replies.js";
import { upstreamRequestHeaders, type HeaderBinding } from "./forward-headers.js";
import { withoutHopByHop } from "../hop-by-hop.js";
import type { UpstreamTrust } from "./trust.js";

export interface InterceptOptions {
  /** The client's end of the tunnel, already told `200 Connection Established`. */
  client: Duplex;
  /** Connected to the vetted address of `target`; nothing written to it yet. */
  upstream: Duplex;
  /** What the client sent after its CONNECT head (the start of its TLS handshake, often). */
  head: Buffer;
  /** As the client named it in its CONNECT (normalised): the upstream's certificate must match it. */
  target: Target;
  /** The broker's leaf for `target.host` (LeafMinter.mint). */
  leaf: tls.SecureContext;
  upstreamTrust: UpstreamTrust;
  binding: HeaderBinding;
  /** Called for each request passed on with the binding applied. */
  onRequest?: () => void;
  log: { warn(msg: string, fields?: Record<string, unknown>): void };
}

export interface Interception {
  /** Destroys both connections (the client's and the upstream's) at once. */
  close(): void;
}

/** The failures a brokered tunnel answers itself (as 502s). */
export type InterceptErrorCode = "upstream_tls" | "upstream_failed";

export function interceptTunnel(options: InterceptOptions): Interception {
  const { client, upstream, target, log } = options;
  const where = { host: target.host, port: target.port };
  const isIp = net.isIP(target.host) !== 0;
  const authority = authorityOf(target);

  if (options.head.length > 0) client.unshift(options.head);
  const clientTls = new tls.TLSSocket(client, {
    isServer: true,
    secureContext: options.leaf,
    ALPNProtocols: ["http/1.1"],
  });
  const upstreamTls = tls.connect({
    socket: upstream,
    host: target.host,
    // No SNI for an IP literal (RFC 6066); the certificate is still checked against the address.
    ...(isIp ? {} : { servername: target.host }),
    secureContext: options.upstreamTrust.context,
    ALPNProtocols: ["http/1.1"],
    rejectUnauthorized: true,
  });

  const stop = new AbortController();
  const teardown = (): void => {
    stop.abort();
    for (const socket of [clientTls, upstreamTls, client, upstream]) socket.destroy();
  };
  /** Set when the caller closes the tunnel: what follows is not the client's doing. */
  let closedByCaller = false;

  /** null once the upstream's TLS is up; the error when it failed. Never rejects. */
  const upstreamReady: Promise<Error | null> = once(upstreamTls, "secureConnect", { signal: stop.signal }).then(
    () => null,
    (error: Error) => error,
  );
  upstreamReady.then((error) => {
    if (error !== null && error.name !== "AbortError")
      log.warn("egress broker: TLS to the upstream failed", { ...where, reason: reasonOf(error) });
  });

  let clientSecure = false;
  let clientError: Error | null = null;
  clientTls.once("secure", () => (clientSecure = true));
  clientTls.on("error", (error: Error) => {
    clientError ??= error;
    teardown();
  });
  clientTls.on("close", () => {
    // A Node client that rejects our leaf just hangs up; an OpenSSL one says why (alert unknown ca).
    if (!clientSecure && !closedByCaller) {
      const reason = clientError === null ? "the client hung up during the handshake" : reasonOf(clientError);
      log.warn("egress broker: the client's TLS failed (does it trust the broker's CA?)", { ...where, reason });
    }
    teardown();
  });
  client.on("error", teardown).on("close", teardown);
  upstream.on("error", () => upstreamTls.destroy());

  let exchanging = false;
  let upstreamSecure = false;
  let upstreamGone = false;
  upstreamTls.once("secureConnect", () => (upstreamSecure = true));
  // Between requests no ClientRequest listens on the upstream: its errors and its end are ours.
  upstreamTls.on("error", () => upstreamTls.destroy());
  upstreamTls.on("close", () => {
    upstreamGone = true;
    upstream.destroy();
    // A failed handshake keeps the client: its first request is answered with the reason (exchange).
    if (upstreamSecure && !exchanging) clientTls.end();
  });

  const server = http.createServer({ requestTimeout: 0 });
  // The tunnel's own idle and lifetime bounds (upstream-watch.ts) apply, not a keep-alive timer here.
  server.keepAliveTimeout = 0;
  let turn = Promise.resolve();
  const enqueue = (req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean): void => {
    // One exchange at a time over the one upstream connection, even for a client that pipelines.
    turn = turn
      .then(() => exchange(req, res, expectsContinue))
      .catch((error: unknown) => {
        log.warn("egress broker: an exchange failed unexpectedly", { ...where, reason: reasonOf(error as Error) });
        teardown();
      });
  };
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => enqueue(req, res, false));
  server.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) => enqueue(req, res, true));
  server.emit("connection", clientTls);

  async function exchange(req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean) {
    const failure = await upstreamReady;
    if (failure !== null) {
      const message = `TLS to ${target.host} port ${target.port} failed: ${reasonOf(failure)}`;
      return replyFailure(req, res, "upstream_tls", message);
    }
    if (upstreamGone) {
      // The upstream closed while this request waited: the client retries on a new connection.
      clientTls.destroy();
      return;
    }
    exchanging = true;
    try {
      await forward(req, res, expectsContinue);
    } finally {
      exchanging = false;
      if (upstreamGone) clientTls.end();
    }
  }

  function forward(req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean): Promise<void> {
    let request: http.ClientRequest;
    try {
      request = http.request({
        method: req.method,
        path: req.url,
        headers: upstreamRequestHeaders(req, options.binding, authority),
        // No agent: the request goes over our one, already verified connection.
        createConnection: () => upstreamTls as never,
      });
    } catch (error) {
      // A header Node refuses to send (its message names the header, never the value).
      const code = (error as NodeJS.ErrnoException).code ?? "invalid request";
      return replyFailure(req, res, "upstream_failed", `the request could not be passed on (${code})`);
    }
    options.onRequest?.();
    return new Promise<void>((resolve) => {
      res.once("close", () => resolve());
      request.on("continue", () => {
        if (expectsContinue && !res.headersSent) res.writeContinue();
      });
      request.on("response", (response: http.IncomingMessage) => {
        // Reused only if the upstream keeps it open and the whole request is handed to the connection
        // (ended: what is still buffered goes out before the next request); else both sides close
        // after this response. Not writableFinished: an upstream often answers before that event.
        const reusable = request.writableEnded && request.shouldKeepAlive;
        if (!reusable) res.shouldKeepAlive = false;
        res.writeHead(response.statusCode ?? 502, response.statusMessage, withoutHopByHop(response.headers));
        pipeline(response, res, (error) => {
          if (error !== undefined || !reusable) upstreamTls.destroy();
        });
      });
      request.on("error", (error: Error) => {
        upstreamTls.destroy();
        if (res.headersSent) res.destroy();
        else void replyFailure(req, res, "upstream_failed", `${target.host} port ${target.port}: ${error.message}`);
      });
      res.on("close", () => {
        if (!res.writableFinished) upstreamTls.destroy();
      });
      pipeline(req, request, (error) => {
        if (error) upstreamTls.destroy();
      });
    });
  }

  return {
    close: () => {
      closedByCaller = true;
      teardown();
    },
  };
}

/** A 502 over the client's TLS, then the client's connection closes; resolves when it is written. */
function replyFailure(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  code: InterceptErrorCode,
  message: string,
): Promise<void> {
  const text = `alive egress proxy: ${code}: ${message}\n`;
  res.shouldKeepAlive = false;
  res.writeHead(502, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    [ERROR_HEADER]: code,
  });
  // An unread request body is drained by the server; nothing of it goes anywhere.
  req.resume();
  return new Promise((resolve) => res.end(text, () => resolve()));
}

/** A TLS or socket error in a few words: OpenSSL's reason (its message names source files), and the code. */
function reasonOf(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  const openSslReason = (error as { reason?: unknown }).reason;
  const message = typeof openSslReason === "string" ? openSslReason : (error.message.split("\n")[0] ?? "");
  return code === undefined || message.includes(code) ? message : `${message} (${code})`;
}

/** What a Host header says for the target: the port only when it is not 443. */
function authorityOf(target: Target): string {
  const host = net.isIP(target.host) === 6 ? `[${target.host}]` : target.host;
  return target.port === 443 ? host : `${host}:${target.port}`;
}
