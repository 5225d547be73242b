/**
 * Newline framing, transport-free: a splitter that turns byte chunks into complete UTF-8 lines,
 * a reader that applies it to any Readable, and a writer that puts one JSON message per line.
 *
 * A line longer than maxLineBytes is never buffered: the splitter reports it once and drops bytes
 * up to the next newline, so the connection stays usable.
 */
import type { Readable, Writable } from "node:stream";
import type { Message } from "./messages.js";

/** The protocol's bound on one line, without its newline. */
export const MAX_LINE_BYTES = 1024 * 1024;

export type LineChunk =
  | { kind: "line"; text: string }
  /** A line went past the limit; its bytes up to the next newline are discarded. */
  | { kind: "oversized"; maxLineBytes: number }
  /** A complete line that is not valid UTF-8. */
  | { kind: "invalid_utf8" };

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export class LineSplitter {
  readonly #maxLineBytes: number;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #discarding = false;

  constructor(maxLineBytes = MAX_LINE_BYTES) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Feeds a chunk; returns the lines it completed, in order. */
  push(chunk: Uint8Array): LineChunk[] {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: LineChunk[] = [];
    let start = 0;
    while (start < buffer.length) {
      const newline = buffer.indexOf(NEWLINE, start);
      const end = newline === -1 ? buffer.length : newline;
      this.#take(buffer.subarray(start, end), out);
      if (newline === -1) break;
      this.#completeLine(out);
      start = newline + 1;
    }
    return out;
  }

  /** The stream ended: an unterminated last line still counts (handy for `printf ... | nc -U`). */
  end(): LineChunk[] {
    const out: LineChunk[] = [];
    if (this.#pendingBytes > 0 || this.#discarding) this.#completeLine(out);
    return out;
  }

  #take(piece: Buffer, out: LineChunk[]): void {
    if (this.#discarding || piece.length === 0) return;
    if (this.#pendingBytes + piece.length > this.#maxLineBytes + 1) {
      // +1 leaves room for a trailing \r that #completeLine strips; a real overflow is caught there too.
      this.#startDiscarding(out);
      return;
    }
    this.#pending.push(piece);
    this.#pendingBytes += piece.length;
  }

  #startDiscarding(out: LineChunk[]): void {
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#discarding = true;
    out.push({ kind: "oversized", maxLineBytes: this.#maxLineBytes });
  }

  #completeLine(out: LineChunk[]): void {
    if (this.#discarding) {
      this.#discarding = false;
      return;
    }
    let line = this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN) line = line.subarray(0, line.length - 1);
    if (line.length > this.#maxLineBytes) {
      out.push({ kind: "oversized", maxLineBytes: this.#maxLineBytes });
      return;
    }
    let text: string;
    try {
      text = this.#decoder.decode(line);
    } catch {
      out.push({ kind: "invalid_utf8" });
      return;
    }
    if (text.trim() !== "") out.push({ kind: "line", text });
  }
}

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
