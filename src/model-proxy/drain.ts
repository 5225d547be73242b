/**
 * Reading an upstream response to its end after its client has gone, so its tokens are still
 * counted: a tenant cannot dodge metering by hanging up.
 */
import type { ClientRequest, IncomingMessage } from "node:http";

/** Reading an upstream response whose client has gone: cut once it is quiet for `idleMs`. */
export class Drain {
  draining = false;
  #timer: NodeJS.Timeout | null = null;
  #response: IncomingMessage | null = null;

  constructor(
    private readonly upstream: ClientRequest,
    private readonly idleMs: number,
  ) {}

  attach(response: IncomingMessage): void {
    this.#response = response;
    if (this.draining) response.resume();
  }

  start(): void {
    if (this.draining) return;
    this.draining = true;
    this.#response?.resume();
    this.touch();
  }

  /** Data arrived: the idle clock starts again. */
  touch(): void {
    if (!this.draining) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.upstream.destroy(), this.idleMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
