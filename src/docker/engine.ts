/** The Docker engine client and the one place Docker errors are translated. */
import Docker from "dockerode";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import { TrackingAgent } from "./tracking-agent.js";

export type { Docker };

export function createDockerClient(dockerHost: string): Docker {
  // Every connection is ours to close (tracking-agent.ts): an exec start in flight included.
  const agent = new TrackingAgent();
  if (dockerHost.startsWith("unix://"))
    return new Docker({ socketPath: dockerHost.slice("unix://".length), agent } as Docker.DockerOptions);
  const url = new URL(dockerHost);
  return new Docker({ host: url.hostname, port: Number(url.port), protocol: "http", agent } as Docker.DockerOptions);
}

export function dockerStatus(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOENT",
  "EACCES",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
]);

export function isEngineUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNREACHABLE_CODES.has(code) && dockerStatus(error) === undefined;
}

export const isNotFound = (error: unknown): boolean => dockerStatus(error) === 404;
export const isConflict = (error: unknown): boolean => dockerStatus(error) === 409;
/** 304: the container was already started/stopped; success for our purposes. */
export const isNotModified = (error: unknown): boolean => dockerStatus(error) === 304;

/** Maps a Docker error to a SidecarError; `what` says what the sidecar was doing. */
export function toSidecarError(error: unknown, what: string): SidecarError {
  if (error instanceof SidecarError) return error;
  if (isEngineUnreachable(error)) {
    return new SidecarError(ErrorCode.dockerUnreachable, `Docker engine unreachable while trying to ${what}`, {
      cause: error,
      data: { reason: errorMessage(error) },
    });
  }
  const status = dockerStatus(error);
  const detail = (error as { json?: { message?: unknown } } | null)?.json?.message;
  const reason = typeof detail === "string" ? detail : errorMessage(error);
  return new SidecarError(ErrorCode.internal, `Docker failed to ${what}: ${reason}`, {
    cause: error,
    data: { reason, ...(status === undefined ? {} : { dockerStatus: status }) },
  });
}

export interface WithDockerOptions {
  /**
   * Engine statuses this call expects as an answer, not a failure (dockerode declares them per
   * call as `statusCodes`): 304 on a start or stop means it already was, 404 on an inspect or a
   * remove means it is not there, 409 on a create means it exists. The call then resolves to
   * undefined instead of throwing.
   */
  ignore: readonly number[];
}

/** Runs a Docker call, translating its errors; with `ignore`, the statuses it expects resolve to undefined. */
export async function withDocker<T>(what: string, call: () => Promise<T>): Promise<T>;
export async function withDocker<T>(
  what: string,
  call: () => Promise<T>,
  options: WithDockerOptions,
): Promise<T | undefined>;
export async function withDocker<T>(
  what: string,
  call: () => Promise<T>,
  options?: WithDockerOptions,
): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    const status = dockerStatus(error);
    if (status !== undefined && options?.ignore.includes(status)) return undefined;
    throw toSidecarError(error, what);
  }
}
