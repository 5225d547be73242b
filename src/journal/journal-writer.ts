/**
 * Appends one turn's journal lines through one open fd. Lines are batched: while a write is in
 * flight, new lines wait in memory and go out together in the next write, so a burst of events
 * costs a few syscalls, and the event stream never waits for the disk. `flushed()` resolves once
 * every line appended so far is in the file (turn.attach reads the file after it).
 */
import { promises as fsp, constants, open, write, close } from "node:fs";
import type { Logger } from "../log.js";
import { errorMessage } from "../errors.js";
import { TRUNCATED_EVENT_TYPE, type EndRecord, type StartRecord } from "./journal-records.js";

/** Opens a turn's file: created here (a leftover with the same turn id is replaced), never through a symlink. */
export async function openJournalFile(file: string): Promise<number> {
  await fsp.rm(file, { force: true });
  // A raw fd, not a FileHandle: a FileHandle closes itself when collected, under the writer.
  return new Promise((resolve, reject) => {
    open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_APPEND, 0o600, (error, fd) => (error ? reject(error) : resolve(fd)));
  });
}

export class JournalWriter {
  #pending: string[] = [];
  #writing = false;
  #failed = false;
  #closed = false;
  #bytes = 0;
  #truncated = false;
  #waiters: Array<() => void> = [];

  constructor(
    private readonly fd: number,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  get truncated(): boolean {
    return this.#truncated;
  }

  start(record: StartRecord): void {
    this.#append(`${JSON.stringify(record)}\n`);
  }

  /** Appends an event; past the bound, writes the marker in its place once and drops the rest. */
  event(seq: number, event: unknown): void {
    if (this.#truncated) return;
    let line = `{"k":"event","seq":${seq},"event":${JSON.stringify(event)}}\n`;
    const bytes = Buffer.byteLength(line);
    if (this.#bytes + bytes > this.maxBytes) {
      this.#truncated = true;
      line = `${JSON.stringify({ k: "event", seq, event: { type: TRUNCATED_EVENT_TYPE, max_bytes: this.maxBytes } })}\n`;
      this.log.warn("turn journal truncated: the turn's events outgrew the per-turn bound", { seq, maxBytes: this.maxBytes });
    }
    this.#bytes += bytes;
    this.#append(line);
  }

  /** Writes the end line, waits for everything to reach the file, and closes it. */
  async end(record: EndRecord): Promise<void> {
    this.#append(`${JSON.stringify(record)}\n`);
    await this.flushed();
    this.#closed = true;
    await new Promise<void>((resolve) => close(this.fd, () => resolve()));
  }

  /** Resolves once every line appended so far is in the file (or writing failed). */
  flushed(): Promise<void> {
    if (!this.#writing && this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #append(line: string): void {
    if (this.#failed || this.#closed) return;
    this.#pending.push(line);
    if (!this.#writing) this.#writeNext();
  }

  #writeNext(): void {
    if (this.#pending.length === 0 || this.#failed) {
      this.#writing = false;
      this.#pending = [];
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
      return;
    }
    this.#writing = true;
    const chunk = Buffer.from(this.#pending.length === 1 ? this.#pending[0]! : this.#pending.join(""), "utf8");
    this.#pending = [];
    this.#writeAll(chunk, 0);
  }

  #writeAll(chunk: Buffer, offset: number): void {
    write(this.fd, chunk, offset, chunk.length - offset, null, (error, written) => {
      if (error) {
        this.#failed = true;
        this.log.error("cannot write the turn journal; its later events are not kept", { error: errorMessage(error) });
      } else if (offset + written < chunk.length) {
        this.#writeAll(chunk, offset + written);
        return;
      }
      this.#writeNext();
    });
  }
}
