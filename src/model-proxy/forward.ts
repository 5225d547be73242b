/**
 * Forwarding an admitted request to the model API and relaying its answer back chunk by chunk (SSE is
 * never buffered), reading token usage as it passes. A kept-alive connection the model API closed is
 * retried once; an upstream that cannot be reached within `connectTimeoutMs` is answered 502/504;
 * a client that leaves first leaves its response to be drained for usage.
 */
import http from "node:http";
import type { ClientRequest, IncomingMessage } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import { Drain } from "./drain.js";
import { guarded, type Exchange } from "./exchange.js";
import { clientResponseHeaders, upstreamRequestHeaders } from "./headers.js";
import type { SlotRelease } from "./limits.js";
import { CONNECT_TIMEOUT_CODE, describeUpstreamError, sendOpenAiError } from "./replies.js";
import { usageCounterFor } from "./usage-counter.js";

/**
 * A kept-alive connection the model API closed while it sat idle (its keep-alive timeout ran out
 * just as the proxy reused it): the request was never read, so it goes once more on a new
 * connection. Node's own advice for `request.reusedSocket`; seen as turns failing
 * model_unreachable (ECONNRESET) after a quiet spell of 5 s or more.
 */
function isStaleKeepAlive(upstream: ClientRequest, error: NodeJS.ErrnoException, responded: boolean): boolean {
  return upstream.reusedSocket && !responded && (error.code === "ECONNRESET" || error.code === "EPIPE");
}

export function forward<T>(
  exchange: Exchange<T>,
  target: URL,
  method: string,
  body: Buffer,
  release: SlotRelease,
  retried = false,
): void {
  const { options, state, req, res, ref, fields } = exchange;
  const transport = target.protocol === "https:" ? https : http;
  const hasBody = body.length > 0 || (method !== "GET" && method !== "DELETE");
  const identity = { apiKey: options.apiKey, organization: options.organization, project: options.project };
  const upstream = transport.request(target, {
    method,
    headers: upstreamRequestHeaders(req.headers, identity, hasBody ? body.length : null),
    agent: state.agent,
    ...(options.lookup ? { lookup: options.lookup } : {}),
  });
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
  upstream.on("socket", (socket: Socket) =>
    watchConnect(upstream, socket, target.protocol === "https:", options.connectTimeoutMs),
  );
  upstream.on("error", (error: NodeJS.ErrnoException) => {
    if (!retried && !clientLeft() && isStaleKeepAlive(upstream, error, responded)) {
      // The slot stays held: the second attempt releases it.
      done = true;
      drain.stop();
      options.logger?.debug(
        "model proxy: a kept-alive connection was closed by the model API; sending again on a new one",
        { ...fields, error: error.code },
      );
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
    options.logger?.warn("model proxy: model API unreachable", {
      ...fields,
      status: failure.status,
      reason: failure.message,
    });
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
  const counter = usageCounterFor(upstreamRes, (usage) =>
    guarded(options, fields, () => options.onUsage?.(ref, usage)),
  );
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
