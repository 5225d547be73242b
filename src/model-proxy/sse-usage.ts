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

/** A final event holds the whole response (all output items); past this many bytes it is dropped. */
export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;

/**
 * Reads a `usage` object: the Responses API's (`input_tokens`, `input_tokens_details.cached_tokens`,
 * `output_tokens`, `output_tokens_details.reasoning_tokens`, `total_tokens`), or the chat
 * completions' and embeddings' (`prompt_tokens`, `prompt_tokens_details.cached_tokens`,
 * `completion_tokens` (0 when absent), `completion_tokens_details.reasoning_tokens`), so an endpoint
 * an operator adds is metered too. Null when it is neither; missing details count 0, a missing
 * total is input + output.
 */
export function readUsage(value: unknown): TokenUsage | null {
  if (!isRecord(value)) return null;
  const chat = value.input_tokens === undefined && value.prompt_tokens !== undefined;
  const inputTokens = count(chat ? value.prompt_tokens : value.input_tokens);
  const outputTokens = chat ? (value.completion_tokens === undefined ? 0 : count(value.completion_tokens)) : count(value.output_tokens);
  if (inputTokens === undefined || outputTokens === undefined) return null;
  const inputDetails = asRecord(chat ? value.prompt_tokens_details : value.input_tokens_details);
  const outputDetails = asRecord(chat ? value.completion_tokens_details : value.output_tokens_details);
  return {
    inputTokens,
    cachedTokens: count(inputDetails.cached_tokens) ?? 0,
    outputTokens,
    reasoningTokens: count(outputDetails.reasoning_tokens) ?? 0,
    totalTokens: count(value.total_tokens) ?? inputTokens + outputTokens,
  };
}

export interface SseUsageReaderOptions {
  /** Largest final event kept, in bytes. Default DEFAULT_MAX_EVENT_BYTES. */
  maxEventBytes?: number;
}

export class SseUsageReader {
  readonly #maxEventBytes: number;
  /** The current line so far, as pieces of the chunks (none kept while skipping). */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** The last chunk ended in CR: a LF opening the next one belongs to it. */
  #afterCr = false;
  #eventName = "";
  #data: string[] = [];
  #dataBytes = 0;
  /** The current event is of no interest or too large: only its end (a blank line) matters. */
  #skipping = false;

  constructor(options: SseUsageReaderOptions = {}) {
    this.#maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  }

  /**
   * Feeds a chunk of the stream; returns the usage of every final event it completed. Lines are
   * split on bytes (UTF-8 never has CR or LF inside a character) and only kept lines are decoded.
   */
  push(chunk: Uint8Array): TokenUsage[] {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const found: TokenUsage[] = [];
    if (bytes.length === 0) return found;
    let start = this.#afterCr && bytes[0] === LF ? 1 : 0;
    this.#afterCr = false;
    // Next LF and CR at or after `start`, each searched again only once passed (no rescans).
    let lf = bytes.indexOf(LF, start);
    let cr = bytes.indexOf(CR, start);
    while (start < bytes.length) {
      if (lf !== -1 && lf < start) lf = bytes.indexOf(LF, start);
      if (cr !== -1 && cr < start) cr = bytes.indexOf(CR, start);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(lf, cr);
      if (end === -1) {
        this.#extendLine(bytes, start, bytes.length);
        break;
      }
      if (this.#partialBytes === 0 && end > start) {
        // The whole line is in this chunk (the usual case): no copy.
        this.#onLine(this.#skipping ? null : bytes.toString("utf8", start, end), found);
      } else {
        this.#extendLine(bytes, start, end);
        this.#endLine(found);
      }
      start = end + 1;
      if (end === cr) {
        if (start === bytes.length) this.#afterCr = true;
        else if (bytes[start] === LF) start++;
      }
    }
    return found;
  }

  #extendLine(bytes: Buffer, from: number, to: number): void {
    if (to <= from) return;
    this.#partialBytes += to - from;
    if (this.#skipping) return;
    if (this.#dataBytes + this.#partialBytes > this.#maxEventBytes) {
      this.#skip();
      return;
    }
    // A copy: the reader must not pin the caller's chunk, which may be a slice of a larger buffer.
    this.#partial.push(Buffer.from(bytes.subarray(from, to)));
  }

  #endLine(found: TokenUsage[]): void {
    const blank = this.#partialBytes === 0;
    const line = blank ? "" : this.#skipping ? null : Buffer.concat(this.#partial).toString("utf8");
    this.#partial = [];
    this.#partialBytes = 0;
    this.#onLine(line, found);
  }

  /** One line of the stream; null is a line of a skipped event (not blank, not read). */
  #onLine(line: string | null, found: TokenUsage[]): void {
    if (line === "") {
      if (!this.#skipping && this.#data.length > 0) this.#dispatch(found);
      this.#reset();
      return;
    }
    if (line === null || this.#skipping || line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") {
      this.#eventName = value;
      if (!FINAL_EVENTS.has(value)) this.#skip();
    } else if (field === "data") {
      this.#data.push(value);
      this.#dataBytes += Buffer.byteLength(value) + 1;
      if (this.#dataBytes > this.#maxEventBytes) this.#skip();
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
    if (this.#eventName === "" && typeof event.type !== "string" && isRecord(event.usage)) {
      // A chat completions chunk (`stream_options.include_usage`): usage at the top level.
      const usage = readUsage(event.usage);
      if (usage) found.push(usage);
      return;
    }
    if (typeof type !== "string" || !FINAL_EVENTS.has(type)) return;
    const usage = isRecord(event.response) ? readUsage(event.response.usage) : null;
    if (usage) found.push(usage);
  }

  #skip(): void {
    this.#skipping = true;
    this.#partial = [];
    this.#data = [];
    this.#dataBytes = 0;
  }

  #reset(): void {
    this.#eventName = "";
    this.#data = [];
    this.#dataBytes = 0;
    this.#skipping = false;
  }
}

function count(value: unknown): number | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

function asRecord(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
