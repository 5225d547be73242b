/**
 * Token usage read off a Responses API stream as it passes through, without holding the stream.
 *
 * The reader is fed the same chunks the client gets and follows the SSE line rules (LF, CRLF or
 * CR; a line or a CRLF split across chunks; several `data:` lines joined by "\n"; comments).
 * Only the final events of a response carry usage, so only their data is kept; every other event
 * (the bulk: text deltas) is skipped line by line, and an event larger than the limit is dropped
 * rather than buffered.
 */

/** Exact token counts of one model response, as the upstream reported them. */
export interface TokenUsage {
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  reasoningTokens: number;
  totalTokens: number;
}

/**
 * Events that end a response and carry `response.usage`: completed, and also incomplete (e.g.
 * `max_output_tokens` reached) and failed, whose tokens were spent all the same.
 */
const FINAL_EVENTS: ReadonlySet<string> = new Set(["response.completed", "response.incomplete", "response.failed"]);

/** A final event holds the whole response (all output items); past this many characters it is dropped. */
export const DEFAULT_MAX_EVENT_LENGTH = 16 * 1024 * 1024;

const LF = 0x0a;

/**
 * Reads a Responses API `usage` object (`input_tokens`, `input_tokens_details.cached_tokens`,
 * `output_tokens`, `output_tokens_details.reasoning_tokens`, `total_tokens`). Null when it is not
 * one; missing details count 0, a missing total is input + output.
 */
export function readUsage(value: unknown): TokenUsage | null {
  if (!isRecord(value)) return null;
  const inputTokens = count(value.input_tokens);
  const outputTokens = count(value.output_tokens);
  if (inputTokens === undefined || outputTokens === undefined) return null;
  const inputDetails = isRecord(value.input_tokens_details) ? value.input_tokens_details : {};
  const outputDetails = isRecord(value.output_tokens_details) ? value.output_tokens_details : {};
  return {
    inputTokens,
    cachedTokens: count(inputDetails.cached_tokens) ?? 0,
    outputTokens,
    reasoningTokens: count(outputDetails.reasoning_tokens) ?? 0,
    totalTokens: count(value.total_tokens) ?? inputTokens + outputTokens,
  };
}

export interface SseUsageReaderOptions {
  /** Largest final event kept, in characters. Default DEFAULT_MAX_EVENT_LENGTH. */
  maxEventLength?: number;
}

export class SseUsageReader {
  readonly #maxEventLength: number;
  readonly #decoder = new TextDecoder("utf-8");
  /** The current line so far (while skipping, only whether it is empty matters). */
  #partial = "";
  /** The last chunk ended in CR: a LF opening the next one belongs to it. */
  #afterCr = false;
  #eventName = "";
  #data: string[] = [];
  #dataLength = 0;
  /** The current event is of no interest or too large: only its end (a blank line) matters. */
  #skipping = false;

  constructor(options: SseUsageReaderOptions = {}) {
    this.#maxEventLength = options.maxEventLength ?? DEFAULT_MAX_EVENT_LENGTH;
  }

  /** Feeds a chunk of the stream; returns the usage of every final event it completed. */
  push(chunk: Uint8Array): TokenUsage[] {
    const text = this.#decoder.decode(chunk, { stream: true });
    const found: TokenUsage[] = [];
    if (text.length === 0) return found;
    let start = this.#afterCr && text.charCodeAt(0) === LF ? 1 : 0;
    this.#afterCr = false;
    // Next LF and CR at or after `start`, each searched again only once passed (no rescans).
    let lf = text.indexOf("\n", start);
    let cr = text.indexOf("\r", start);
    while (start < text.length) {
      if (lf !== -1 && lf < start) lf = text.indexOf("\n", start);
      if (cr !== -1 && cr < start) cr = text.indexOf("\r", start);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(lf, cr);
      if (end === -1) {
        this.#extendLine(text.slice(start));
        break;
      }
      this.#extendLine(text.slice(start, end));
      const line = this.#partial;
      this.#partial = "";
      this.#onLine(line, found);
      start = end + 1;
      if (end === cr) {
        if (start === text.length) this.#afterCr = true;
        else if (text.charCodeAt(start) === LF) start++;
      }
    }
    return found;
  }

  #extendLine(piece: string): void {
    if (piece.length === 0) return;
    if (this.#skipping) {
      // Keep one character: enough to tell the line is not the blank one that ends the event.
      if (this.#partial.length === 0) this.#partial = piece.slice(0, 1);
      return;
    }
    if (this.#dataLength + this.#partial.length + piece.length > this.#maxEventLength) {
      this.#skip();
      this.#partial = piece.slice(0, 1);
      return;
    }
    this.#partial += piece;
  }

  #onLine(line: string, found: TokenUsage[]): void {
    if (line.length === 0) {
      if (!this.#skipping && this.#data.length > 0) this.#dispatch(found);
      this.#reset();
      return;
    }
    if (this.#skipping || line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") {
      this.#eventName = value;
      if (!FINAL_EVENTS.has(value)) this.#skip();
    } else if (field === "data") {
      this.#data.push(value);
      this.#dataLength += value.length + 1;
    }
  }

  #dispatch(found: TokenUsage[]): void {
    let event: unknown;
    try {
      event = JSON.parse(this.#data.join("\n"));
    } catch {
      return;
    }
    if (!isRecord(event)) return;
    // Without an `event:` line the type is only in the data.
    const type = this.#eventName || event.type;
    if (typeof type !== "string" || !FINAL_EVENTS.has(type)) return;
    const usage = isRecord(event.response) ? readUsage(event.response.usage) : null;
    if (usage) found.push(usage);
  }

  #skip(): void {
    this.#skipping = true;
    this.#data = [];
    this.#dataLength = 0;
  }

  #reset(): void {
    this.#eventName = "";
    this.#data = [];
    this.#dataLength = 0;
    this.#skipping = false;
  }
}

function count(value: unknown): number | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
