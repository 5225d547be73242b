/**
 * Bounds on what codex writes, kept before any of it reaches the SDK. Codex's output is the
 * tenant's to script: a process of theirs can stand in for the model (the forwarder on
 * 127.0.0.1:3129 is theirs to replace) or for codex itself, and what it writes goes through this
 * one process that serves every tenant. Unbounded, one line without a newline grows the SDK's
 * readline buffer until V8 refuses the string and throws where nothing catches it (every tenant's
 * turns go down with the process), and the SDK keeps all of stderr in memory.
 *
 * - stdout: each line (one JSONL event) is at most ALIVE_CODEX_OUTPUT_LINE_MAX_MB; the first line
 *   past it fails the turn with `codex_output` (its processes swept) and nothing more is passed on.
 * - stderr: diagnostics. The SDK gets its first STDERR_FORWARD_MAX_BYTES; the workspace's docker
 *   logs get lines of at most STDERR_LOG_LINE_MAX_BYTES, STDERR_LOG_MAX_BYTES and
 *   STDERR_LOG_MAX_LINES a turn. What is over is
 *   dropped and counted, never failed: a chatty codex (RUST_LOG, an MCP server's noise) is no attack.
 */
import { Transform, type TransformCallback } from "node:stream";

/** The error code of a turn whose codex wrote what the sidecar does not take (protocol.md). */
export const CODEX_OUTPUT = "codex_output";

/** Stderr the SDK is given (it keeps it all, for the error of a codex that exits non-zero). */
export const STDERR_FORWARD_MAX_BYTES = 1024 * 1024;
/** One logged stderr line at most; the rest of the line is counted in a note. */
export const STDERR_LOG_LINE_MAX_BYTES = 4 * 1024;
/**
 * Stderr logged to the workspace's docker logs per turn, in bytes and in lines (each line also gets
 * a timestamp and the turn's id): the log file is on the host's disk. Codex writes a few lines a turn.
 */
export const STDERR_LOG_MAX_BYTES = 256 * 1024;
export const STDERR_LOG_MAX_LINES = 2000;
/** What is kept of the end of stderr for the turn's error message. */
export const STDERR_TAIL_CHARS = 8 * 1024;

const NEWLINE = 0x0a;

/**
 * Passes codex's stdout on unchanged while every line stays within `maxLineBytes`. The first line
 * that goes past it is passed on up to the bound only, `onOverflow` is called once, and every later
 * byte is dropped: the stream keeps flowing, so the exec ends as soon as codex is swept. Only the
 * current line's length is kept, never its bytes: a newline-less stream of any size holds no more
 * than the chunk in hand.
 */
export class LineCapTransform extends Transform {
  #lineBytes = 0;
  #overflowed = false;
  #dropped = 0;

  constructor(
    readonly maxLineBytes: number,
    private readonly onOverflow: () => void,
  ) {
    super();
  }

  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** Bytes dropped since the overflow. */
  get droppedBytes(): number {
    return this.#dropped;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#overflowed) {
      this.#dropped += chunk.length;
      callback();
      return;
    }
    let from = 0;
    for (;;) {
      const newline = chunk.indexOf(NEWLINE, from);
      const end = newline < 0 ? chunk.length : newline;
      if (this.#lineBytes + (end - from) > this.maxLineBytes) {
        const keep = from + (this.maxLineBytes - this.#lineBytes);
        this.#overflowed = true;
        this.#dropped += chunk.length - keep;
        if (keep > 0) this.push(chunk.subarray(0, keep));
        callback();
        this.onOverflow();
        return;
      }
      if (newline < 0) {
        this.#lineBytes += end - from;
        break;
      }
      this.#lineBytes = 0;
      from = newline + 1;
    }
    callback(null, chunk);
  }
}

export interface StderrRelayOptions {
  /** Receives stderr as it came, up to `maxForwardBytes` in all (the bridge's stderr, which the SDK keeps). */
  forward(chunk: Buffer): void;
  /** One line for the workspace's docker logs (without newline; blank lines are not logged). */
  log(line: string): void;
  maxForwardBytes?: number;
  maxLogLineBytes?: number;
  maxLogBytes?: number;
  maxLogLines?: number;
}

/**
 * Codex's stderr: forwarded to the SDK up to a bound, split into bounded lines for the workspace's
 * docker logs up to a bound per turn, and its tail kept for the turn's error message. Nothing over
 * a bound is kept: a newline-less stderr costs one line's worth (`maxLogLineBytes`).
 */
export class StderrRelay {
  readonly #options: Required<StderrRelayOptions>;
  #forwarded = 0;
  #notForwarded = 0;
  /** The current line's first bytes, up to maxLogLineBytes, and how long the line is. */
  readonly #line: Buffer;
  #lineKept = 0;
  #lineBytes = 0;
  #logged = 0;
  #loggedLines = 0;
  #unloggedLines = 0;
  #tail = "";

  constructor(options: StderrRelayOptions) {
    this.#options = {
      maxForwardBytes: STDERR_FORWARD_MAX_BYTES,
      maxLogLineBytes: STDERR_LOG_LINE_MAX_BYTES,
      maxLogBytes: STDERR_LOG_MAX_BYTES,
      maxLogLines: STDERR_LOG_MAX_LINES,
      ...options,
    };
    this.#line = Buffer.alloc(this.#options.maxLogLineBytes);
  }

  /** The end of stderr so far (for an error message). */
  get tail(): string {
    return this.#tail;
  }

  /** Bytes the SDK was not given. */
  get notForwardedBytes(): number {
    return this.#notForwarded;
  }

  /** Lines not logged for want of room in the turn's share of the docker logs. */
  get unloggedLines(): number {
    return this.#unloggedLines;
  }

  write(chunk: Buffer): void {
    const room = this.#options.maxForwardBytes - this.#forwarded;
    if (room > 0) {
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.#forwarded += part.length;
      this.#options.forward(part);
    }
    this.#notForwarded += Math.max(0, chunk.length - Math.max(0, room));
    this.#tail = (this.#tail + chunk.toString("utf8")).slice(-STDERR_TAIL_CHARS);
    let from = 0;
    for (;;) {
      const newline = chunk.indexOf(NEWLINE, from);
      this.#take(chunk.subarray(from, newline < 0 ? chunk.length : newline));
      if (newline < 0) break;
      this.#endLine();
      from = newline + 1;
    }
  }

  /** Stderr ended: logs the last line, and a note of what was not logged. */
  end(): void {
    if (this.#lineBytes > 0) this.#endLine();
    if (this.#unloggedLines > 0)
      this.#options.log(
        `${this.#unloggedLines} more stderr line(s) of this turn were not logged (over ${this.#options.maxLogLines} lines or ${this.#options.maxLogBytes} bytes)`,
      );
  }

  #take(piece: Buffer): void {
    const room = this.#line.length - this.#lineKept;
    if (room > 0) this.#lineKept += piece.copy(this.#line, this.#lineKept, 0, Math.min(room, piece.length));
    this.#lineBytes += piece.length;
  }

  #endLine(): void {
    const kept = this.#line.subarray(0, this.#lineKept).toString("utf8");
    const more = this.#lineBytes - this.#lineKept;
    this.#lineKept = 0;
    this.#lineBytes = 0;
    if (kept.trim() === "") return;
    const line = more > 0 ? `${kept} … (${more} more bytes of this line not logged)` : kept;
    const bytes = Buffer.byteLength(line);
    if (this.#logged + bytes > this.#options.maxLogBytes || this.#loggedLines >= this.#options.maxLogLines) {
      this.#unloggedLines += 1;
      return;
    }
    this.#logged += bytes;
    this.#loggedLines += 1;
    this.#options.log(line);
  }
}

/**
 * How deep an event may nest. Codex's own nest a few levels; tool arguments and MCP results are
 * the model's or a server's JSON, rarely beyond a dozen. JSON.stringify recurses and runs out of
 * stack somewhere in the thousands, depending on its caller: well below that, the event and every
 * result that holds its item (the RPC answer, the journal's end line) encode wherever they are.
 */
export const EVENT_MAX_DEPTH = 128;

/**
 * An event as JSON and its size in bytes, or why it is refused: not an object with a string `type`,
 * nested too deep, or longer than `maxBytes` once encoded (a line within the bound can encode
 * longer: `1e20` is written in 4 bytes and encoded in 21).
 */
export function encodeCodexEvent(
  event: unknown,
  maxBytes: number,
): { json: string; bytes: number } | { refused: string } {
  if (
    typeof event !== "object" ||
    event === null ||
    Array.isArray(event) ||
    typeof (event as { type?: unknown }).type !== "string"
  ) {
    return { refused: "codex wrote a line that is not an event (a JSON object with a string type)" };
  }
  let json: string;
  try {
    json = JSON.stringify(event);
  } catch {
    return { refused: `codex wrote an event nested deeper than ${EVENT_MAX_DEPTH} levels` };
  }
  // A text of n characters nests at most n/2 deep: the common small event needs no scan.
  if (json.length > 2 * EVENT_MAX_DEPTH && jsonDepth(json) > EVENT_MAX_DEPTH)
    return { refused: `codex wrote an event nested deeper than ${EVENT_MAX_DEPTH} levels` };
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes)
    return {
      refused: `codex wrote an event that encodes to over ${maxBytes} bytes (the bound is ALIVE_CODEX_OUTPUT_LINE_MAX_MB)`,
    };
  return { json, bytes };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/** The deepest nesting of objects and arrays in a JSON text (one pass, nothing allocated). */
export function jsonDepth(json: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < json.length; i += 1) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i += 1;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth -= 1;
    }
  }
  return deepest;
}
