/**
 * What the sidecar needs of a container engine, and nothing more: the workspaces and the turns
 * reach the engine only through this port. Its production implementation wraps
 * dockerode (docker-engine.ts); tests drive the manager through an in-memory one
 * (test/support/fake-engine.ts). A second backend (podman, a remote engine per host) implements it.
 *
 * The data the engine holds (a container's create body, its inspect answer, its list entry) keeps
 * the Engine API's own field names, which podman's compatible API shares: a spec's hash is taken
 * over its create body (workspace/spec.ts), so renaming a field would replace every container.
 * The port's own answers (exec, events, runtimes, transitions) are camelCase.
 *
 * Every method translates the engine's errors into SidecarErrors (an unreachable engine is
 * -32001), except where an answer below says what an expected status becomes.
 */
import type { Readable } from "node:stream";

/** A bind mount in a create body. */
export interface MountSpec {
  Type: "bind";
  Source: string;
  Target: string;
  ReadOnly?: boolean;
}

/** The host part of a create body, as far as the sidecar fills it in (and reads it back: HostConfig in an inspect). */
export interface HostSpec {
  Init?: boolean;
  Mounts?: MountSpec[];
  ReadonlyRootfs?: boolean;
  Tmpfs?: Record<string, string>;
  CapDrop?: string[];
  CapAdd?: string[];
  SecurityOpt?: string[];
  Privileged?: boolean;
  PidsLimit?: number;
  Memory?: number;
  MemorySwap?: number;
  NanoCpus?: number;
  CpuPeriod?: number;
  CpuQuota?: number;
  Ulimits?: Array<{ Name: string; Soft: number; Hard: number }>;
  LogConfig?: { Type: string; Config: Record<string, string> };
  NetworkMode?: string;
  IpcMode?: string;
  RestartPolicy?: { Name: string };
  /** The OCI runtime (runc, runsc, ...); an inspect shows the engine's default when none was asked. */
  Runtime?: string;
}

/** A container's create body (`POST /containers/create`, the name as a query parameter). */
export interface ContainerSpec {
  name: string;
  Image: string;
  Entrypoint?: string[];
  Cmd?: string[];
  User?: string;
  Env?: string[];
  WorkingDir?: string;
  StopTimeout?: number;
  Labels?: Record<string, string>;
  HostConfig?: HostSpec;
}

/** What an inspect of a container answers, as far as the sidecar reads it. */
export interface ContainerInspect {
  Id: string;
  /** With the engine's leading slash. */
  Name: string;
  State: {
    /** created, running, paused, restarting, removing, exited or dead. */
    Status: string;
    Running: boolean;
    Paused: boolean;
    ExitCode: number;
    OOMKilled: boolean;
  };
  Config: { Image: string; User?: string; Labels?: Record<string, string> };
  HostConfig: HostSpec;
}

/** One entry of a container listing. */
export interface ContainerSummary {
  Id: string;
  /** With the engine's leading slash. */
  Names: string[];
  /** created, running, paused, restarting, removing, exited or dead. */
  State: string;
  /** Seconds since the epoch. */
  Created: number;
  Labels: Record<string, string>;
}

/** A change of a container the engine reports on its event stream. */
export interface ContainerEvent {
  /** start, pause, unpause, die, destroy, ... */
  action: string;
  containerId: string;
  /** When it happened, in ms since the epoch, if the engine said. */
  at: number | undefined;
  /** The container's labels (the engine's Actor.Attributes hold them, beside its name and image). */
  attributes: Record<string, string>;
}

/** What the engine says about its OCI runtimes (`docker info`: Runtimes' keys and DefaultRuntime). */
export interface EngineRuntimes {
  names: string[];
  defaultRuntime: string;
}

export interface ExecOptions {
  cmd: string[];
  /** Added to the container's env for this process only. */
  env?: string[];
  user?: string;
  workingDir?: string;
  /** Bytes written to the process's stdin, which is then closed; "open" hands stdin to the caller. Omit for no stdin. */
  stdin?: Buffer | string | "open";
  /** Aborts the start; aborted later, it closes the connection (the process itself lives on: moby#9098). */
  signal?: AbortSignal;
}

export interface StartedExec {
  id: string;
  /** The process's stdin when started with `stdin: "open"` (end it to close stdin), else null. */
  stdin: NodeJS.WritableStream | null;
  stdout: Readable;
  stderr: Readable;
  /** The exit code, or null when the engine has none (the container died under the process). */
  exit: Promise<number | null>;
}

/** What the engine says of an exec it started (`GET /exec/<id>/json`). */
export interface ExecState {
  running: boolean;
  /** The exit code once it exited; null while running, or when the engine has none. */
  exitCode: number | null;
  /** The container it runs in. */
  containerId: string;
}

export interface ExecResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** How a pause ended: done, the container is gone (404), or it was not running or paused already (409). */
export type PauseAnswer = "paused" | "missing" | "conflict";

/** How a stop ended: done, it was not running (304), or the container is gone (404). */
export type StopAnswer = "stopped" | "not-running" | "missing";

export interface EnginePort {
  /** Resolves when the engine answers (`/_ping`). */
  ping(signal?: AbortSignal): Promise<void>;
  /** The engine's version (the server's, as `docker version` shows it). */
  version(signal?: AbortSignal): Promise<string>;
  /** The OCI runtimes the engine has registered, and its default. */
  runtimes(signal?: AbortSignal): Promise<EngineRuntimes>;

  /** Creates (does not start) a container; null when one of that name exists already (409). */
  create(spec: ContainerSpec, signal?: AbortSignal): Promise<{ id: string } | null>;
  /** Starts a container; one running already is success. */
  start(containerId: string, signal?: AbortSignal): Promise<void>;
  /** Freezes a running container (the cgroup freezer). */
  pause(containerId: string): Promise<PauseAnswer>;
  /** Thaws a paused container. Fails when it is not paused (the engine may answer 500, not 409: inspect then). */
  unpause(containerId: string, signal?: AbortSignal): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceSeconds`. */
  stop(containerId: string, graceSeconds: number): Promise<StopAnswer>;
  /** Sends a signal (default SIGKILL) to the container's main process; false when it is gone or not running. */
  kill(containerId: string, signal?: string): Promise<boolean>;
  /** Force-removes a container (by id or name) and its anonymous volumes; false when there was none. */
  remove(containerId: string): Promise<boolean>;
  /** Resolves once the container is not running (or is gone); bounded by `signal`, whose abort it does not report. */
  waitNotRunning(containerId: string, signal: AbortSignal): Promise<void>;
  /** A container (by id or name); null when there is none. */
  inspect(containerId: string, signal?: AbortSignal): Promise<ContainerInspect | null>;
  /** Every container, running or not, carrying all these labels. */
  list(labels: Record<string, string>, signal?: AbortSignal): Promise<ContainerSummary[]>;

  /** Starts a process in the container (no TTY) and streams its output. */
  exec(containerId: string, options: ExecOptions): Promise<StartedExec>;
  /**
   * An exec by its id, started by this sidecar or an earlier one (the engine keeps it while its
   * container lives); null when the engine does not know it (404).
   */
  inspectExec(execId: string, signal?: AbortSignal): Promise<ExecState | null>;
  /**
   * Closes the exec connections into this container (it was removed, replaced or died): the engine
   * may keep one open after its process and even its container are gone. With `openedBefore` (ms
   * since the epoch), only those opened before then. Returns how many.
   */
  closeExecs(containerId: string, openedBefore?: number): number;
  /** Closes every exec connection, and any opened later (shutdown). */
  closeAllExecs(): number;
  /**
   * Resolves once no exec start is in flight, or after `withinMs` (shutdown, after closeAllExecs): a
   * start that completes then is closed, where a process exiting first would leave it open.
   */
  settleExecs(withinMs: number): Promise<void>;

  /**
   * Follows container events for containers carrying all these labels. Resolves once the engine
   * accepted the subscription; the iteration ends (or throws) when the stream is lost, and
   * `signal` ends it.
   */
  events(labels: Record<string, string>, signal: AbortSignal): Promise<AsyncIterable<ContainerEvent>>;
  /** The container's log as `docker logs --timestamps` shows it (stdout and stderr, joined). */
  logs(containerId: string, options: { tail?: number | undefined; signal?: AbortSignal | undefined }): Promise<string>;
}
