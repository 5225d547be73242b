/**
 * Newline framing, transport-free: a reader that applies the line splitter (shared/line-splitter.ts)
 * to any Readable, and a writer that puts one JSON message per line.
 */
import type { Readable, Writable } from "node:stream";
import { DEFAULT_MAX_LINE_BYTES, LineSplitter, type LineChunk } from "../shared/line-splitter.js";
import type { Message } from "./messages.js";

export type { LineChunk };

/** The protocol's bound on one line, without its newline. */
export const MAX_LINE_BYTES = DEFAULT_MAX_LINE_BYTES;

/**
 * The bound on a line the sidecar sends, which clients read with: a turn.event holds one of codex's
 * events (at most ALIVE_CODEX_OUTPUT_LINE_MAX_MB, itself at most 32 MiB), a TurnResult at most 16 MiB
 * of items and a final response of 4 MiB (24 MiB as JSON at worst). The client's own requests stay
 * within MAX_LINE_BYTES.
 */
export const SIDECAR_LINE_MAX_BYTES = 64 * 1024 * 1024;

export interface ReadLinesOptions {
  maxLineBytes?: number;
}

/**
 * Yields the complete lines of a Readable as they arrive. Ends when the stream ends; throws what the
 * stream throws (a reset connection, a premature close). Reaching the end does not destroy the stream,
 * so a half-closed socket can still be written to.
 */
export async function* readLines(readable: Readable, options: ReadLinesOptions = {}): AsyncGenerator<LineChunk> {
  const splitter = new LineSplitter(options.maxLineBytes);
  const chunks = readable.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array | string>;
  for await (const chunk of chunks) {
    yield* splitter.push(typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk);
  }
  yield* splitter.end();
}

/** One message, one line. Throws only if the message cannot be serialised (a BigInt, a cycle). */
export function serializeMessage(message: Message): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * Writes messages to a stream, one per line. Writing to a closed or destroyed stream is a no-op that
 * returns false; it never throws. A full buffer (write() returning false) is not waited on: messages
 * are small and the socket keeps them in order.
 */
export class MessageWriter {
  readonly #stream: Writable;

  constructor(stream: Writable) {
    this.#stream = stream;
  }

  get writable(): boolean {
    return !this.#stream.destroyed && !this.#stream.writableEnded;
  }

  /** Returns false when the message could not be handed to the stream. */
  write(message: Message): boolean {
    return this.writeLine(serializeMessage(message));
  }

  writeLine(line: string): boolean {
    if (!this.writable) return false;
    try {
      this.#stream.write(line);
      return true;
    } catch {
      return false;
    }
  }
}
