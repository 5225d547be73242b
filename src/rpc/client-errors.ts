/** What a SidecarClient call rejects with: the sidecar's error answer, or a connection that is not there. */
import type { ErrorCodeValue, ErrorData } from "../errors.js";

/** An error answer from the sidecar: `code` is one of ErrorCode (or whatever a newer sidecar sends). */
export class SidecarRpcError extends Error {
  readonly code: ErrorCodeValue | (number & {});
  readonly data: ErrorData | undefined;
  readonly method: string;

  constructor(method: string, code: number, message: string, data?: ErrorData) {
    super(`${method}: ${message}`);
    this.name = "SidecarRpcError";
    this.method = method;
    this.code = code;
    this.data = data;
  }
}

/** The sidecar could not be reached, or the connection went away with calls pending. */
export class SidecarConnectionError extends Error {
  readonly socketPath: string;

  constructor(socketPath: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SidecarConnectionError";
    this.socketPath = socketPath;
  }
}
