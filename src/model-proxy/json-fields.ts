/**
 * Reads a few fields of a JSON document as it streams past, without keeping the document: the
 * model proxy needs only `usage` of a response body (or `type` and `response.usage` of a final SSE
 * event), and a body can be megabytes (it holds the whole output). Kept in memory: the nesting
 * (one frame per open object or array), the current key (at most MAX_KEY_BYTES) and the bytes of a
 * wanted value while it passes (at most `maxValueBytes`; a larger one is given up, not kept).
 *
 * Bytes are scanned, not characters: UTF-8 never has a quote, backslash or bracket inside a
 * multi-byte character. Inside a string the scan jumps to its closing quote with indexOf.
 * A key written with escapes (`"us\u0061ge"`) does not match; the model API does not write them.
 */

/** A path of object keys from the root, e.g. ["response", "usage"]. */
export type FieldPath = readonly string[];

/** A key longer than this is not one we look for, and is not kept. */
const MAX_KEY_BYTES = 64;
export const DEFAULT_MAX_VALUE_BYTES = 64 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

interface Frame {
  object: boolean;
  /** The key whose value comes next or is being read (objects only); null when none or too long. */
  key: string | null;
  expectKey: boolean;
}

interface Capture {
  field: number;
  /** The stack depth the value opened at: it ends when the stack is back to it. */
  depth: number;
  /** A number, true, false or null: it ends at the next delimiter. */
  scalar: boolean;
  chunks: Buffer[];
  bytes: number;
  /** Where the value starts in the current chunk (0 after the first). */
  from: number;
}

export class JsonFieldReader {
  readonly #paths: FieldPath[];
  readonly #maxDepth: number;
  readonly #maxValueBytes: number;
  readonly #stack: Frame[] = [];
  readonly #found: Array<Buffer | undefined>;
  #inString = false;
  #escaped = false;
  /** The string being read is a key; its bytes are kept only where a wanted path could pass. */
  #stringIsKey = false;
  #keyBytes: number[] | null = null;
  #keyTooLong = false;
  /** Inside a number, true, false or null. */
  #inScalar = false;
  #capture: Capture | null = null;
  #rootSeen = false;
  #broken = false;

  constructor(paths: readonly FieldPath[], options: { maxValueBytes?: number } = {}) {
    this.#paths = paths.map((p) => [...p]);
    this.#maxDepth = Math.max(0, ...paths.map((p) => p.length));
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.#found = paths.map(() => undefined);
  }

  push(chunk: Uint8Array): void {
    if (this.#broken || chunk.length === 0) return;
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#capture) this.#capture.from = 0;
    for (let i = 0; i < bytes.length && !this.#broken; i++) {
      if (this.#inString) {
        i = this.#scanString(bytes, i);
        continue;
      }
      const byte = bytes[i]!;
      if (this.#inScalar) {
        if (isScalarByte(byte)) continue;
        this.#inScalar = false;
        if (this.#capture?.scalar) this.#finishCapture(bytes, i);
      }
      if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
      const top = this.#stack[this.#stack.length - 1];
      switch (byte) {
        case QUOTE:
          this.#inString = true;
          if (top?.object && top.expectKey) {
            this.#stringIsKey = true;
            // Deeper than any wanted path, a key is never compared: it is skipped like a value.
            this.#keyBytes = this.#stack.length <= this.#maxDepth ? [] : null;
            this.#keyTooLong = false;
          } else {
            this.#startValue(i, false);
          }
          break;
        case OPEN_OBJECT:
        case OPEN_ARRAY:
          this.#startValue(i, false);
          this.#stack.push({ object: byte === OPEN_OBJECT, key: null, expectKey: byte === OPEN_OBJECT });
          break;
        case CLOSE_OBJECT:
        case CLOSE_ARRAY:
          if (top === undefined || top.object !== (byte === CLOSE_OBJECT)) {
            this.#broken = true;
            break;
          }
          this.#stack.pop();
          if (this.#capture && !this.#capture.scalar && this.#stack.length === this.#capture.depth)
            this.#finishCapture(bytes, i + 1);
          break;
        case COLON:
          if (top?.object !== true || top.expectKey) this.#broken = true;
          break;
        case COMMA:
          if (top === undefined) this.#broken = true;
          else if (top.object) {
            top.expectKey = true;
            top.key = null;
          }
          break;
        default:
          if (!isScalarByte(byte)) {
            this.#broken = true;
            break;
          }
          this.#inScalar = true;
          this.#startValue(i, true);
      }
    }
    const capture = this.#capture;
    if (capture && !this.#broken) this.#keep(capture, bytes.subarray(capture.from));
  }

  /**
   * The wanted values, in the order of the paths: parsed, or undefined where the field was absent,
   * larger than the limit, or the document is not complete JSON. A field seen twice is its last.
   */
  end(): unknown[] {
    if (this.#inScalar && this.#capture?.scalar) this.#finishCapture(Buffer.alloc(0), 0);
    const complete = !this.#broken && !this.#inString && this.#stack.length === 0 && this.#rootSeen;
    return this.#found.map((raw) => {
      if (!complete || raw === undefined) return undefined;
      try {
        return JSON.parse(raw.toString("utf8")) as unknown;
      } catch {
        return undefined;
      }
    });
  }

  /** From `i` (inside a string): returns the index of the byte that ends the scan step. */
  #scanString(bytes: Buffer, i: number): number {
    if (this.#escaped) {
      this.#escaped = false;
      this.#addKeyByte(bytes[i]!);
      return i;
    }
    if (this.#keyBytes === null) {
      // A value, or a key not kept: jump to the next quote, or to a backslash before it (searched
      // for only up to the quote, so a chunk is not scanned to its end once per string).
      const quote = bytes.indexOf(QUOTE, i);
      const backslash = bytes.subarray(i, quote === -1 ? bytes.length : quote).indexOf(BACKSLASH);
      if (backslash !== -1) {
        this.#escaped = true;
        return i + backslash;
      }
      if (quote === -1) return bytes.length - 1;
      this.#endString(bytes, quote);
      return quote;
    }
    const byte = bytes[i]!;
    if (byte === BACKSLASH) {
      this.#escaped = true;
      this.#keyTooLong = true; // an escaped key is never one we look for
    } else if (byte === QUOTE) {
      this.#endString(bytes, i);
    } else {
      this.#addKeyByte(byte);
    }
    return i;
  }

  #addKeyByte(byte: number): void {
    if (this.#keyBytes === null || this.#keyTooLong) return;
    if (this.#keyBytes.length >= MAX_KEY_BYTES) this.#keyTooLong = true;
    else this.#keyBytes.push(byte);
  }

  #endString(bytes: Buffer, at: number): void {
    this.#inString = false;
    if (this.#stringIsKey) {
      const top = this.#stack[this.#stack.length - 1]!;
      top.key = this.#keyBytes === null || this.#keyTooLong ? null : Buffer.from(this.#keyBytes).toString("utf8");
      top.expectKey = false;
      this.#stringIsKey = false;
      this.#keyBytes = null;
      return;
    }
    const capture = this.#capture;
    if (capture && !capture.scalar && this.#stack.length === capture.depth) this.#finishCapture(bytes, at + 1);
  }

  /** A value starts at `at`: captured when its path is wanted and nothing encloses it already. */
  #startValue(at: number, scalar: boolean): void {
    if (this.#stack.length === 0) {
      if (this.#rootSeen) this.#broken = true;
      this.#rootSeen = true;
    }
    if (this.#capture !== null || this.#stack.length > this.#maxDepth) return;
    const field = this.#wantedField();
    if (field === -1) return;
    this.#capture = { field, depth: this.#stack.length, scalar, chunks: [], bytes: 0, from: at };
  }

  /** The index of the path the current position is at, or -1. */
  #wantedField(): number {
    const depth = this.#stack.length;
    for (let f = 0; f < this.#paths.length; f++) {
      const path = this.#paths[f]!;
      if (path.length !== depth) continue;
      let match = true;
      for (let d = 0; d < depth && match; d++) {
        const frame = this.#stack[d]!;
        match = frame.object && frame.key === path[d];
      }
      if (match) return f;
    }
    return -1;
  }

  #keep(capture: Capture, piece: Buffer): void {
    if (piece.length === 0 || capture.bytes < 0) return;
    capture.bytes += piece.length;
    // Past the limit the value is given up; the scan goes on (a later copy of the field may fit).
    if (capture.bytes > this.#maxValueBytes) {
      capture.chunks = [];
      capture.bytes = -1;
      return;
    }
    // A copy: the caller's chunk may be a slice of a larger buffer, which must not be pinned.
    capture.chunks.push(Buffer.from(piece));
  }

  #finishCapture(bytes: Buffer, end: number): void {
    const capture = this.#capture!;
    this.#capture = null;
    this.#keep(capture, bytes.subarray(capture.from, end));
    if (capture.bytes >= 0) this.#found[capture.field] = Buffer.concat(capture.chunks);
  }
}

/** The bytes a number, true, false or null is made of. */
function isScalarByte(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    byte === 0x2d ||
    byte === 0x2b ||
    byte === 0x2e ||
    byte === 0x45
  );
}
