/** JSON-RPC error codes: the standard ones and the sidecar's own (docs/protocol.md, "Errors", says what each means). */
export const ErrorCode = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
  dockerUnreachable: -32001,
  unknownWorkspace: -32002,
  workspaceBusy: -32003,
  unknownTurn: -32004,
  imageUnavailable: -32005,
  notAllowed: -32006,
  limitReached: -32007,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Structured detail: which field was wrong and why, in words a person can act on. */
export interface ErrorData {
  field?: string;
  reason?: string;
  [key: string]: unknown;
}

export interface SidecarErrorOptions {
  data?: ErrorData;
  cause?: unknown;
}

/** The one error type of the sidecar: a code from ErrorCode, a message, structured data and a cause. */
export class SidecarError extends Error {
  readonly code: ErrorCodeValue;
  readonly data: ErrorData | undefined;

  constructor(code: ErrorCodeValue, message: string, options: SidecarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SidecarError";
    this.code = code;
    this.data = options.data;
  }
}

export function invalidParams(field: string, reason: string, received?: unknown): SidecarError {
  const data: ErrorData = { field, reason };
  if (received !== undefined) data.received = describeValue(received);
  return new SidecarError(ErrorCode.invalidParams, `invalid ${field}: ${reason}`, { data });
}

export function notAllowed(field: string, reason: string): SidecarError {
  return new SidecarError(ErrorCode.notAllowed, `${field} not allowed: ${reason}`, { data: { field, reason } });
}

/** -32005: the runtime image, or what it is built from, is not there and cannot be made; `data` says which and why. */
export function imageUnavailable(message: string, data: Record<string, unknown>, cause?: unknown): SidecarError {
  return new SidecarError(ErrorCode.imageUnavailable, message, { data, ...(cause === undefined ? {} : { cause }) });
}

/** A short, log-safe rendering of a received value (never a whole blob). */
export function describeValue(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  }
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : "an object";
}

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: ErrorData;
}

/** Maps anything thrown to a JSON-RPC error object; unexpected errors become -32603 with no stack. */
export function toRpcError(error: unknown): RpcErrorObject {
  if (error instanceof SidecarError) {
    return error.data === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, data: error.data };
  }
  return { code: ErrorCode.internal, message: "internal error" };
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
