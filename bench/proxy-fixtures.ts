/**
 * What the proxy section (bench/proxy.ts) talks to and with, all on loopback or a Unix socket in a
 * temp dir: a server that streams one long Responses SSE stream, a TCP echo server, a listener for
 * the sidecar's own servers, and the clients that time a request or a tunnel.
 */
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import type { Server } from "node:http";
import { performance } from "node:perf_hooks";

/** 64-character text deltas: about the size of what a model streams per event. */
const DELTA_TEXT = "The quick brown fox jumps over the lazy dog while the model types.".slice(0, 64);
/** Events per repeated block of the long stream. */
const BLOCK_EVENTS = 256;
/** What the long stream's server writes at a time (it waits for "drain" between writes). */
const WRITE_BYTES = 64 * 1024;

function sseFrame(event: Record<string, unknown> & { type: string }): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * One Responses stream of about `bytes` bytes: response.created, text deltas, response.completed
 * with usage (so the proxy's usage reader runs to the end, as it does for a real response).
 */
export function buildLongStream(bytes: number): Buffer {
  const created = sseFrame({ type: "response.created", response: { id: "resp_bench" } });
  const block = Buffer.from(
    Array.from({ length: BLOCK_EVENTS }, (_, i) =>
      sseFrame({
        type: "response.output_text.delta",
        item_id: "msg_bench",
        output_index: 0,
        content_index: 0,
        delta: DELTA_TEXT,
        sequence_number: i + 1,
      }),
    ).join(""),
  );
  const completed = sseFrame({
    type: "response.completed",
    response: {
      id: "resp_bench",
      usage: {
        input_tokens: 10,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 5,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 15,
      },
    },
  });
  const blocks = Math.max(1, Math.round(bytes / block.length));
  return Buffer.concat([Buffer.from(created), ...Array.from({ length: blocks }, () => block), Buffer.from(completed)]);
}

/** Answers every POST …/responses with `stream`, written in 64 KiB slices with backpressure. */
export async function startLongStreamServer(stream: Buffer): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let offset = 0;
    const pump = (): void => {
      while (offset < stream.length) {
        const slice = stream.subarray(offset, offset + WRITE_BYTES);
        offset += slice.length;
        if (!res.write(slice)) {
          res.once("drain", pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, close: () => closeServer(server) };
}

/** A TCP server on loopback that sends back what it receives. */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket)).on("error", () => socket.destroy());
    socket.pipe(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Listens `server` on a Unix socket (as the sidecar does for a workspace). */
export async function listenOnSocket(server: net.Server, socketPath: string): Promise<void> {
  server.listen(socketPath);
  await once(server, "listening");
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Where a request goes: TCP (url) or a Unix socket (socketPath and the path on it). */
export type RequestTarget = { url: URL } | { socketPath: string; path: string };

export interface ResponseTiming {
  bytes: number;
  ms: number;
  /** The last bytes of the body, to check the stream ended as it should. */
  tail: string;
}

/** POSTs `body` and reads the whole response; rejects on a status other than 200. */
export function timedPost(
  target: RequestTarget,
  agent: http.Agent,
  apiKey: string,
  body: string,
): Promise<ResponseTiming> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const headers = {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      authorization: `Bearer ${apiKey}`,
      accept: "text/event-stream",
    };
    const where =
      "url" in target ? { host: target.url.hostname, port: target.url.port, path: target.url.pathname } : target;
    const req = http.request({ ...where, method: "POST", headers, agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(
          new Error(`HTTP ${String(res.statusCode)} from ${"url" in target ? target.url.href : target.socketPath}`),
        );
        return;
      }
      let bytes = 0;
      let tail: Buffer = Buffer.alloc(0);
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        tail = chunk.length >= 512 ? chunk.subarray(chunk.length - 512) : Buffer.concat([tail, chunk]).subarray(-512);
      });
      res.on("end", () => resolve({ bytes, ms: performance.now() - start, tail: tail.toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Opens a connection and proves it carries bytes: one byte out to the echo server and back. Through
 * the proxy (`via` a Unix socket), a CONNECT to host:port first. Returns the time from connect to
 * the echoed byte.
 */
export function timedTunnel(host: string, port: number, via?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const socket = via === undefined ? net.connect({ host, port }) : net.connect({ path: via });
    let buffered = "";
    let open = via === undefined;
    const fail = (error: Error): void => {
      socket.destroy();
      reject(error);
    };
    socket.once("error", fail);
    socket.once("connect", () =>
      socket.write(open ? "x" : `CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`),
    );
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      if (!open) {
        const end = buffered.indexOf("\r\n\r\n");
        if (end === -1) return;
        if (!/^HTTP\/1\.1 200 /.test(buffered))
          return fail(new Error(`CONNECT refused: ${buffered.split("\r\n")[0] ?? ""}`));
        open = true;
        buffered = buffered.slice(end + 4);
        socket.write("x");
      }
      if (buffered === "x") {
        const elapsed = performance.now() - start;
        socket.destroy();
        resolve(elapsed);
      }
    });
  });
}
