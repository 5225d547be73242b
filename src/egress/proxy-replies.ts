/**
 * What the egress proxy answers instead of a connection: a refusal (403, `x-alive-egress-refused`)
 * or an error (`x-alive-egress-error`), as an HTTP response or, for a CONNECT, raw on the socket.
 * The client is told why, never what a name resolved to.
 */
import http from "node:http";
import type { Duplex } from "node:stream";
import type { LimitReason } from "./connection-limits.js";
import type { RefusalReason } from "./destination.js";

export const REFUSED_HEADER = "x-alive-egress-refused";
export const ERROR_HEADER = "x-alive-egress-error";

/** dns_busy: the workspace already has its most lookups in flight and waiting (429). */
export type EgressErrorCode =
  | "bad_request"
  | "dns_failed"
  | "dns_busy"
  | "connect_failed"
  | "connect_timeout"
  | "upstream_failed"
  | "upstream_tls"
  | "egress_changed"
  | LimitReason;

export interface Failure {
  status: number;
  header: typeof REFUSED_HEADER | typeof ERROR_HEADER;
  code: RefusalReason | EgressErrorCode;
  message: string;
}

function body(failure: Failure): string {
  const what = failure.header === REFUSED_HEADER ? `refused (${failure.code})` : failure.code;
  return `alive egress proxy: ${what}: ${failure.message}\n`;
}

export function answer(req: http.IncomingMessage, res: http.ServerResponse, failure: Failure): void {
  const text = body(failure);
  res.writeHead(failure.status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    [failure.header]: failure.code,
  });
  res.end(text);
  // An unread request body is drained by the server; nothing of it goes anywhere.
  req.resume();
}

export function answerRaw(client: Duplex, failure: Failure): void {
  if (client.destroyed) return;
  const text = body(failure);
  const reason = http.STATUS_CODES[failure.status] ?? "Error";
  const head = `HTTP/1.1 ${failure.status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\n`;
  // Closed once written: the client gets no tunnel, and a half-open socket would keep close() waiting.
  client.end(`${head}${failure.header}: ${failure.code}\r\nconnection: close\r\n\r\n${text}`, () => client.destroy());
}
