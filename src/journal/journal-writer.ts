/**
 * Appends one turn's journal lines through one open fd. Lines are batched: while a write is in
 * flight, new lines wait in memory and go out together in the next write, so a burst of events
 * costs a few syscalls, and the event stream never waits for the disk. `flushed()` resolves once
 * every line appended so far is in the file (turn.attach reads the file after it).
 */
import { promises as fsp, constants, open, write, close } from "node:fs";
import type { Logger } from "../log.js";
import { errorMessage } from "../errors.js";
import { turnEventLine } from "../shared/turn-event-line.js";
import { TRUNCATED_EVENT_TYPE, encodeEndRecord, type EndRecord, type StartRecord } from "./journal-records.js";

/** Opens a turn's file: created here (a leftover with the same turn id is replaced), never through a symlink. */
export async function openJournalFile(file: string): Promise<number> {
  await fsp.rm(file, { force: true });
  // A raw fd, not a FileHandle: a FileHandle closes itself when collected, under the writer.
  return new Promise((resolve, reject) => {
    open(
      file,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_APPEND,
      0o600,
      (error, fd) => (error ? reject(error) : resolve(fd)),
    );
  });
}

/** Lines are encoded straight into chunks of this size (a longer line gets a chunk of its own). */
const CHUNK_BYTES = 256 * 1024;

/**
 * What the events leave of a turn's bound for the marker and the end line: the end line's fixed part
 * (ids, status, usage, accounting, an error message of at most 16 KiB) fits well within it; its items
 * and final response get what else is left (journal-records.ts, encodeEndRecord). For a bound under
 * 256 KiB (only tests make one), a quarter of it.
 */
const END_RESERVE_BYTES = 64 * 1024;

export class JournalWriter {
  /** Chunks filled and waiting for the write in flight to finish. */
  #full: Buffer[] = [];
  #chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  #used = 0;
  #writing = false;
  #failed = false;
  #closed = false;
  /** Bytes of every line appended: the start, the events, the marker. */
  #appended = 0;
  #written = 0;
  #truncated = false;
  #waiters: Array<() => void> = [];

  constructor(
    private readonly fd: number,
    private readonly maxBytes: number,
    private readonly log: Logger,
    /** Bytes the file holds already (a turn adopted after a restart goes on where its file ends). */
    alreadyWritten = 0,
  ) {
    this.#appended = alreadyWritten;
    this.#written = alreadyWritten;
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  /** Bytes in the file: every line up to here is complete. */
  get writtenBytes(): number {
    return this.#written;
  }

  start(record: StartRecord): void {
    this.#appended += this.#append(`${JSON.stringify(record)}\n`);
  }

  /**
   * Appends an event as its turn.event line (made once by the caller, sent as is on the wire);
   * past the events' share of the bound, writes the marker in its place once and drops the rest.
   */
  event(turnId: string, seq: number, line: string): void {
    if (this.#truncated || this.#failed || this.#closed) return;
    const limit = this.maxBytes - Math.min(END_RESERVE_BYTES, Math.floor(this.maxBytes / 4));
    // A UTF-16 unit is at most 3 bytes of UTF-8: most lines are known to fit without counting them.
    if (this.#appended + line.length * 3 > limit && this.#appended + Buffer.byteLength(line) > limit) {
      this.#truncated = true;
      this.#appended += this.#append(
        turnEventLine(turnId, seq, JSON.stringify({ type: TRUNCATED_EVENT_TYPE, max_bytes: this.maxBytes })),
      );
      this.log.warn("turn journal truncated: the turn's events outgrew the per-turn bound", {
        seq,
        maxBytes: this.maxBytes,
      });
      return;
    }
    this.#appended += this.#append(line);
  }

  /**
   * Writes the end line, within what is left of the turn's bound (its items and final response are
   * cut to fit, and say so), waits for everything to reach the file, and closes it.
   */
  async end(record: EndRecord): Promise<void> {
    this.#append(encodeEndRecord(record, this.maxBytes - this.#appended));
    await this.flushed();
    this.#closed = true;
    await new Promise<void>((resolve) => close(this.fd, () => resolve()));
  }

  /** Waits for everything appended to reach the file and closes it, without an end line (the turn goes on elsewhere). */
  async release(): Promise<void> {
    await this.flushed();
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => close(this.fd, () => resolve()));
  }

  /** Resolves once every line appended so far is in the file (or writing failed). */
  flushed(): Promise<void> {
    if (!this.#writing && this.#used === 0 && this.#full.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Encodes the line into the current chunk; returns its bytes. */
  #append(line: string): number {
    if (this.#failed || this.#closed) return 0;
    if (this.#used + line.length * 3 > this.#chunk.length) {
      if (this.#used > 0) this.#full.push(this.#chunk.subarray(0, this.#used));
      this.#chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, line.length * 3));
      this.#used = 0;
    }
    const bytes = this.#chunk.write(line, this.#used, "utf8");
    this.#used += bytes;
    if (!this.#writing) {
      this.#writing = true;
      // Lines appended in this turn of the event loop go out together.
      setImmediate(() => this.#writeNext());
    }
    return bytes;
  }

  #writeNext(): void {
    if (this.#used > 0) {
      this.#full.push(this.#chunk.subarray(0, this.#used));
      this.#chunk =
        this.#chunk.length - this.#used >= CHUNK_BYTES / 4
          ? this.#chunk.subarray(this.#used)
          : Buffer.allocUnsafe(CHUNK_BYTES);
      this.#used = 0;
    }
    if (this.#full.length === 0 || this.#failed) {
      this.#writing = false;
      this.#full = [];
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
      return;
    }
    const buffers = this.#full;
    this.#full = [];
    this.#writeAll(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers));
  }

  #writeAll(chunk: Buffer): void {
    write(this.fd, chunk, 0, chunk.length, null, (error, written) => {
      if (error) {
        this.#failed = true;
        this.log.error("cannot write the turn journal; its later events are not kept", { error: errorMessage(error) });
      } else {
        this.#written += written;
        if (written < chunk.length) {
          this.#writeAll(chunk.subarray(written));
          return;
        }
      }
      this.#writeNext();
    });
  }
}
