/**
 * JSON-RPC 2.0 message shapes and their classification, independent of any transport.
 * The server and the client both read lines with framing.ts and sort them with classifyMessage.
 */
import { ErrorCode, type RpcErrorObject } from "../errors.js";

export type RequestId = string | number;

export interface RequestMessage {
  jsonrpc: "2.0";
  id: RequestId;
  method: string;
  params?: unknown;
}

export interface NotificationMessage {
  jsonrpc: "2.0";
  method: string;
  params?: unknown;
}

export interface SuccessResponse {
  jsonrpc: "2.0";
  id: RequestId;
  result: unknown;
}

export interface ErrorResponse {
  jsonrpc: "2.0";
  id: RequestId | null;
  error: RpcErrorObject;
}

export type ResponseMessage = SuccessResponse | ErrorResponse;
export type Message = RequestMessage | NotificationMessage | ResponseMessage;

/** What one line turned out to be. `invalid` carries the id when one could be read, so the error can be routed. */
export type IncomingMessage =
  | { kind: "request"; message: RequestMessage }
  | { kind: "notification"; message: NotificationMessage }
  | { kind: "response"; message: ResponseMessage }
  | { kind: "invalid"; id: RequestId | null; error: RpcErrorObject };

export function isRequestId(value: unknown): value is RequestId {
  return typeof value === "string" || (typeof value === "number" && Number.isFinite(value));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A -32600 whose data names the member of the message that was wrong ("" for the message as a whole). */
function invalid(id: RequestId | null, field: string, reason: string): IncomingMessage {
  return {
    kind: "invalid",
    id,
    error: { code: ErrorCode.invalidRequest, message: `invalid request: ${reason}`, data: { field, reason } },
  };
}

/** Parses one line. A line that is not JSON is a -32700 parse error with id null. */
export function parseMessage(line: string): IncomingMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return {
      kind: "invalid",
      id: null,
      error: {
        code: ErrorCode.parseError,
        message: "parse error: the line is not valid JSON",
        data: { field: "", reason: "the line is not valid JSON" },
      },
    };
  }
  return classifyMessage(value);
}

/** Sorts a parsed JSON value into request, notification, response or invalid (-32600). */
export function classifyMessage(value: unknown): IncomingMessage {
  if (!isPlainObject(value)) return invalid(null, "", "a message must be a JSON object");
  const hasId = Object.hasOwn(value, "id");
  const id = hasId && isRequestId(value.id) ? value.id : null;
  if (value.jsonrpc !== "2.0") return invalid(id, "jsonrpc", 'jsonrpc must be "2.0"');
  if (hasId && value.id !== null && !isRequestId(value.id))
    return invalid(null, "id", "id must be a string or a number");

  if (Object.hasOwn(value, "method")) {
    if (typeof value.method !== "string") return invalid(id, "method", "method must be a string");
    if (!hasId) {
      return { kind: "notification", message: { jsonrpc: "2.0", method: value.method, params: value.params } };
    }
    if (id === null) return invalid(null, "id", "id must be a string or a number (null is not accepted)");
    return { kind: "request", message: { jsonrpc: "2.0", id, method: value.method, params: value.params } };
  }

  if (Object.hasOwn(value, "result") && hasId && id !== null) {
    return { kind: "response", message: { jsonrpc: "2.0", id, result: value.result } };
  }
  if (Object.hasOwn(value, "error") && hasId && isRpcErrorObject(value.error)) {
    return { kind: "response", message: { jsonrpc: "2.0", id, error: value.error } };
  }
  return invalid(id, "method", "a message needs a method (request or notification) or a result/error (response)");
}

function isRpcErrorObject(value: unknown): value is RpcErrorObject {
  return isPlainObject(value) && typeof value.code === "number" && typeof value.message === "string";
}

export function requestMessage(id: RequestId, method: string, params?: unknown): RequestMessage {
  return params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params };
}

export function notificationMessage(method: string, params?: unknown): NotificationMessage {
  return params === undefined ? { jsonrpc: "2.0", method } : { jsonrpc: "2.0", method, params };
}

export function successResponse(id: RequestId, result: unknown): SuccessResponse {
  // JSON-RPC requires `result` on success; a handler returning nothing answers null.
  return { jsonrpc: "2.0", id, result: result === undefined ? null : result };
}

export function errorResponse(id: RequestId | null, error: RpcErrorObject): ErrorResponse {
  return { jsonrpc: "2.0", id, error };
}
