/**
 * Follows a file another process appends to (codex's stdout or stderr: turn-files.ts), like
 * `tail -c +1 -f`: every byte from the start, in order, as it is written, until stopped. A change
 * is noticed through inotify (fs.watch on the path) at once, and by a poll in case a write is not
 * reported (a sandbox runtime writing through its own file server); the poll is the floor.
 *
 * Backpressure: the sink says when it wants more (a promise), so a reader that falls behind holds
 * the file, not the sidecar's memory.
 */
import { watch, type FSWatcher, type promises as fs } from "node:fs";

/** How much is read at once. */
const CHUNK_BYTES = 64 * 1024;
/** The poll when inotify reports nothing. */
export const FOLLOW_POLL_MS = 250;

export interface FollowerSink {
  /** A chunk of the file, in order; resolve when ready for more. */
  write(chunk: Buffer): void | Promise<void>;
}

export class FileFollower {
  #offset = 0;
  #stopping = false;
  #wake: (() => void) | null = null;
  #watcher: FSWatcher | null = null;
  readonly #done: Promise<void>;

  constructor(
    private readonly handle: fs.FileHandle,
    private readonly sink: FollowerSink,
    options: { path?: string; pollMs?: number } = {},
  ) {
    if (options.path) {
      try {
        this.#watcher = watch(options.path, { persistent: false }, () => this.#poke());
        this.#watcher.on("error", () => undefined);
      } catch {
        this.#watcher = null;
      }
    }
    this.#done = this.#run(options.pollMs ?? FOLLOW_POLL_MS);
  }

  /** Bytes passed on so far. */
  get offset(): number {
    return this.#offset;
  }

  /**
   * Reads what is left up to the file's end (its writer has exited: nothing more comes), passes it
   * on and stops. Resolves once the sink has had every byte.
   */
  async finish(): Promise<void> {
    this.#stopping = true;
    this.#poke();
    await this.#done;
  }

  /** Stops now, whatever is left unread (the turn was abandoned); resolves once the loop is out. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abandoned = true;
    this.#poke();
    await this.#done.catch(() => undefined);
  }

  #abandoned = false;

  /** A change was reported since the last read: read again before waiting. */
  #dirty = false;

  #poke(): void {
    this.#dirty = true;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Reads until stopped; a file that can no longer be read (closed under it) ends the follow, as a stop. */
  async #run(pollMs: number): Promise<void> {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    try {
      for (;;) {
        if (this.#abandoned) return;
        this.#dirty = false;
        const { bytesRead } = await this.handle.read(buffer, 0, buffer.length, this.#offset);
        if (bytesRead > 0) {
          this.#offset += bytesRead;
          await this.sink.write(Buffer.from(buffer.subarray(0, bytesRead)));
          continue;
        }
        // At the end: done if stopping (the writer is gone), else wait for a change.
        if (this.#stopping) return;
        if (this.#dirty) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.#wake = null;
            resolve();
          }, pollMs);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } catch {
      // Closed by whoever owns the handle (the turn was disposed): nothing more to pass on.
    } finally {
      this.#watcher?.close();
      this.#watcher = null;
    }
  }
}
