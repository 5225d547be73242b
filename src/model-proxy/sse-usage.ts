/**
 * Token usage read off a Responses API stream as it passes through, without holding the stream.
 *
 * The reader is fed the same chunks the client gets and follows the SSE line rules (LF, CRLF or
 * CR; a line or a CRLF split across chunks; several `data:` lines joined by "\n"; comments).
 * Only the final events of a response carry usage; every other event (the bulk: text deltas) is
 * skipped line by line. A final event holds the whole response (every output item), so it is not
 * kept either: its data is read as it passes (json-fields.ts) and only its usage is kept. So a
 * response is metered whatever its size, and what one holds in memory is a few KiB.
 */
import { DEFAULT_MAX_VALUE_BYTES, JsonFieldReader } from "./json-fields.js";

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

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
/** Longer than any field or event name looked for: past it a line's field or name is of no interest. */
const MAX_NAME_BYTES = 64;
const NEWLINE = Buffer.from("\n");
/** What is read of an event's data: its type, and usage where a response or a chat completions chunk has it. */
const DATA_FIELDS = [["type"], ["usage"], ["response", "usage"]] as const;

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
  const outputTokens = chat
    ? value.completion_tokens === undefined
      ? 0
      : count(value.completion_tokens)
    : count(value.output_tokens);
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
  /** Largest usage object kept, in bytes. Default DEFAULT_MAX_VALUE_BYTES (64 KiB). */
  maxValueBytes?: number;
}

/** Which part of a line is being read. */
type LinePhase = "field" | "value-start" | "value";
/** The fields read: data and event; any other (id, retry, a comment) is not. */
type FieldKind = "data" | "event" | "other";

/** A field's name, read as latin1 (one char per byte): only the ASCII names "data" and "event" matter. */
function kindOf(name: string): FieldKind {
  return name === "data" ? "data" : name === "event" ? "event" : "other";
}

export class SseUsageReader {
  readonly #maxValueBytes: number;
  /** The last chunk ended in CR: a LF opening the next one belongs to it. */
  #afterCr = false;
  /** The current line: bytes seen, its phase, its field name so far (while short enough to matter). */
  #lineBytes = 0;
  #phase: LinePhase = "field";
  #field = "";
  /** What the line's field is, once its name has ended (at the colon, or the end of the line). */
  #fieldKind: FieldKind = "other";
  /** The value of an `event:` line being read. */
  #name = "";
  #eventName = "";
  /** The current event's data lines so far, read as they pass; null before the first or while skipping. */
  #data: JsonFieldReader | null = null;
  #dataLines = 0;
  /** The current event is of no interest: only its end (a blank line) matters. */
  #skipping = false;

  constructor(options: SseUsageReaderOptions = {}) {
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
  }

  /**
   * Feeds a chunk of the stream; returns the usage of every final event it completed. Lines are
   * split on bytes (UTF-8 never has CR or LF inside a character); a data line's bytes go straight
   * to the event's JSON reader, so neither a line nor an event is ever kept whole.
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
        this.#linePiece(bytes, start, bytes.length);
        break;
      }
      this.#linePiece(bytes, start, end);
      this.#endLine(found);
      start = end + 1;
      if (end === cr) {
        if (start === bytes.length) this.#afterCr = true;
        else if (bytes[start] === LF) start++;
      }
    }
    return found;
  }

  /** Bytes `from` to `to` of the current line (no CR or LF among them). */
  #linePiece(bytes: Buffer, from: number, to: number): void {
    if (to <= from) return;
    this.#lineBytes += to - from;
    if (this.#phase === "field") {
      let colon = bytes.indexOf(COLON, from);
      if (colon >= to) colon = -1;
      this.#field =
        this.#field === ""
          ? fieldName(bytes, from, colon === -1 ? to : colon)
          : addName(this.#field, bytes, from, colon === -1 ? to : colon);
      if (colon === -1) return;
      this.#startValue();
      from = colon + 1;
      if (from >= to) return;
    }
    if (this.#phase === "value-start") {
      this.#phase = "value";
      // One space after the colon is not part of the value.
      if (bytes[from] === SPACE) from++;
      if (from >= to) return;
    }
    const field = this.#fieldKind;
    if (field === "data") this.#data?.push(bytes.subarray(from, to));
    else if (field === "event") this.#name = addName(this.#name, bytes, from, to);
  }

  /** A line's field is known: a data line opens (or continues) the event's data, unless it is skipped. */
  #startValue(): void {
    this.#phase = "value-start";
    this.#fieldKind = kindOf(this.#field);
    if (this.#fieldKind !== "data") return;
    if (this.#dataLines++ === 0 && !this.#skipping)
      this.#data = new JsonFieldReader(DATA_FIELDS, { maxValueBytes: this.#maxValueBytes });
    // Data lines are joined with a newline: whitespace to JSON.
    else this.#data?.push(NEWLINE);
  }

  #endLine(found: TokenUsage[]): void {
    if (this.#lineBytes === 0) {
      if (!this.#skipping && this.#dataLines > 0) this.#dispatch(found);
      this.#resetEvent();
      return;
    }
    // A line without a colon is a field with an empty value.
    if (this.#phase === "field") this.#startValue();
    if (this.#fieldKind === "event") {
      // Left as latin1 (a char per byte): it is only compared with the final events' ASCII names.
      this.#eventName = this.#name.length > MAX_NAME_BYTES ? "" : this.#name;
      if (!FINAL_EVENTS.has(this.#eventName)) this.#skip();
    }
    this.#lineBytes = 0;
    this.#phase = "field";
    this.#field = "";
    this.#fieldKind = "other";
    this.#name = "";
  }

  #dispatch(found: TokenUsage[]): void {
    const [type, topUsage, responseUsage] = this.#data?.end() ?? [];
    if (this.#eventName === "" && typeof type !== "string" && isRecord(topUsage)) {
      // A chat completions chunk (`stream_options.include_usage`): usage at the top level.
      const usage = readUsage(topUsage);
      if (usage) found.push(usage);
      return;
    }
    // Without an `event:` line the type is only in the data.
    const eventType = this.#eventName || type;
    if (typeof eventType !== "string" || !FINAL_EVENTS.has(eventType)) return;
    const usage = readUsage(responseUsage);
    if (usage) found.push(usage);
  }

  #skip(): void {
    this.#skipping = true;
    this.#data = null;
  }

  #resetEvent(): void {
    this.#eventName = "";
    this.#data = null;
    this.#dataLines = 0;
    this.#skipping = false;
  }
}

/**
 * A short name with bytes `from` to `to` appended, one latin1 char per byte (decoded natively: a
 * char at a time cost the reader half its speed); past MAX_NAME_BYTES one more byte is kept to mark
 * it as too long.
 */
function addName(into: string, bytes: Buffer, from: number, to: number): string {
  if (into.length > MAX_NAME_BYTES) return into;
  return into + bytes.toString("latin1", from, Math.min(to, from + MAX_NAME_BYTES + 1 - into.length));
}

/** A field's name from its first piece: "data" and "event" without decoding (every line has one), else addName. */
function fieldName(bytes: Buffer, from: number, to: number): string {
  const length = to - from;
  if (
    length === 4 &&
    bytes[from] === 0x64 &&
    bytes[from + 1] === 0x61 &&
    bytes[from + 2] === 0x74 &&
    bytes[from + 3] === 0x61
  )
    return "data";
  if (
    length === 5 &&
    bytes[from] === 0x65 &&
    bytes[from + 1] === 0x76 &&
    bytes[from + 2] === 0x65 &&
    bytes[from + 3] === 0x6e &&
    bytes[from + 4] === 0x74
  )
    return "event";
  return addName("", bytes, from, to);
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
