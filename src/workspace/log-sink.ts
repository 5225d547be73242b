/**
 * Writes lines into a workspace container's `docker logs`: the container's main process copies the
 * log FIFO (mounted read-only at /run/alive/log) to its stdout. The sidecar holds the FIFO open
 * read-write, so it never blocks and the container's reader never sees EOF while the sidecar lives.
 */
import { constants, openSync } from "node:fs";
import net from "node:net";

/** Past this many unread bytes (container stopped), lines are dropped rather than buffered. */
const MAX_PENDING = 256 * 1024;

export class LogSink {
  private socket: net.Socket | null = null;

  constructor(private readonly fifoPath: string) {}

  /**
   * Writes one line (newlines inside are folded). Never throws. No timestamp of its own: workspace.logs
   * reads the log with the engine's (docker logs --timestamps), and a second one made every line
   * carry two.
   */
  write(line: string): void {
    try {
      if (this.socket === null || this.socket.destroyed) {
        const fd = openSync(this.fifoPath, constants.O_RDWR | constants.O_NONBLOCK);
        this.socket = new net.Socket({ fd, readable: false, writable: true });
        this.socket.on("error", () => this.close());
      }
      if (this.socket.writableLength > MAX_PENDING) return;
      this.socket.write(`${line.replace(/[\r\n]+/g, " ")}\n`);
    } catch {
      // A missing FIFO (workspace being removed) is not worth failing a turn for.
    }
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}
