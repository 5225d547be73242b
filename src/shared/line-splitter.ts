/**
 * Newline splitting, transport-free: turns byte chunks into complete UTF-8 lines. Used by the
 * RPC framing (rpc/framing.ts) and by anything else that reads newline-delimited JSON (the
 * engine's event stream).
 *
 * A line longer than maxLineBytes is never buffered: the splitter reports it once and drops bytes
 * up to the next newline, so the stream stays usable.
 */

/** The default bound on one line, without its newline (the RPC protocol's bound). */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

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

  constructor(maxLineBytes = DEFAULT_MAX_LINE_BYTES) {
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
    let line =
      this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending, this.#pendingBytes);
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
