/**
 * Log lines a tenant can cause, rate-limited. Every request through a workspace's proxies may fail
 * or be refused, and a tenant decides how many requests it sends: a line per request lets one
 * workspace fill the sidecar's log (and the disk under it) and bury every other tenant's lines.
 *
 * A token bucket per (key, kind) — the key is usually a workspace, the kind what the line is
 * about — allows a burst of `perMinute` lines and then `perMinute` a minute. Lines past it are
 * counted, not written; the next line allowed is preceded by one summary line saying how many were
 * suppressed. So nothing is lost silently, but a flood costs one line a few seconds. Memory is
 * bounded: at most `maxBuckets` buckets, the least recently used dropped first (its summary, if it
 * owes one, written as it goes).
 */
import type { LogFields, Logger } from "../log.js";

export interface LogLimiterOptions {
  /** Lines per key and kind a minute, and the burst allowed at once. Default 20. */
  perMinute?: number;
  /** Buckets kept at most. Default 4096. */
  maxBuckets?: number;
  /** The clock, in ms (tests pass their own). */
  now?: () => number;
}

export type LogLevelName = "debug" | "info" | "warn" | "error";

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
  /** Where the summary goes: the logger and fields of the last suppressed line. */
  log: Logger | null;
  level: LogLevelName;
  msg: string;
  fields: LogFields;
}

export const DEFAULT_LOG_LINES_PER_MINUTE = 20;
const DEFAULT_MAX_BUCKETS = 4096;

export class LogLimiter {
  readonly perMinute: number;
  readonly #maxBuckets: number;
  readonly #now: () => number;
  /** In least recently used order: a touched bucket is moved to the end. */
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: LogLimiterOptions = {}) {
    this.perMinute = options.perMinute ?? DEFAULT_LOG_LINES_PER_MINUTE;
    if (!Number.isInteger(this.perMinute) || this.perMinute < 1)
      throw new TypeError(
        `invalid log limiter option perMinute: got ${this.perMinute}, expected a whole number of at least 1`,
      );
    this.#maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Writes the line unless its key and kind are past their rate; a suppressed line is counted, and
   * the count is written as one summary line before the next line that goes through.
   */
  write(log: Logger, level: LogLevelName, key: string, kind: string, msg: string, fields: LogFields = {}): boolean {
    const id = `${key}\u0000${kind}`;
    const now = this.#now();
    let bucket = this.#buckets.get(id);
    if (bucket === undefined) {
      bucket = { tokens: this.perMinute, at: now, suppressed: 0, log: null, level, msg, fields: {} };
      this.#evictFor(1);
    } else {
      this.#buckets.delete(id);
      bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) * this.perMinute) / 60_000);
      bucket.at = now;
    }
    this.#buckets.set(id, bucket);
    if (bucket.tokens < 1) {
      bucket.suppressed++;
      bucket.log = log;
      bucket.level = level;
      bucket.msg = msg;
      bucket.fields = fields;
      return false;
    }
    bucket.tokens--;
    this.#flush(bucket);
    log[level](msg, fields);
    return true;
  }

  /** Buckets held now (for tests). */
  get size(): number {
    return this.#buckets.size;
  }

  #evictFor(room: number): void {
    while (this.#buckets.size + room > this.#maxBuckets) {
      const oldest = this.#buckets.entries().next().value;
      if (oldest === undefined) return;
      this.#buckets.delete(oldest[0]);
      this.#flush(oldest[1]);
    }
  }

  /** The summary a bucket owes, if any. */
  #flush(bucket: Bucket): void {
    if (bucket.suppressed === 0 || bucket.log === null) return;
    bucket.log[bucket.level](`${bucket.msg}: ${bucket.suppressed} more suppressed`, {
      ...bucket.fields,
      suppressed: bucket.suppressed,
      perMinute: this.perMinute,
    });
    bucket.suppressed = 0;
    bucket.log = null;
  }
}

/** A logger's lines for one key, through a limiter: `kind` groups the lines that share a rate. */
export interface LimitedLog {
  debug(kind: string, msg: string, fields?: LogFields): void;
  info(kind: string, msg: string, fields?: LogFields): void;
  warn(kind: string, msg: string, fields?: LogFields): void;
  error(kind: string, msg: string, fields?: LogFields): void;
}

export function limitedLog(log: Logger, limiter: LogLimiter, key: string): LimitedLog {
  const at = (level: LogLevelName) => (kind: string, msg: string, fields?: LogFields) =>
    void limiter.write(log, level, key, kind, msg, fields);
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
