/** The engine port over a Docker engine (dockerode): the one production implementation of EnginePort. */
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { raceAbort } from "../shared/abort.js";
import { LineSplitter } from "../shared/line-splitter.js";
import { readContainerLogs } from "./container-logs.js";
import { removeContainer, startContainer, unpauseContainer } from "./containers.js";
import type {
  ContainerEvent,
  ContainerInspect,
  ContainerSpec,
  ContainerSummary,
  EnginePort,
  EngineRuntimes,
  ExecOptions,
  ExecState,
  PauseAnswer,
  StartedExec,
  StopAnswer,
} from "./engine-port.js";
import { dockerStatus, toSidecarError, withDocker } from "./engine.js";
import { startExec } from "./exec.js";
import { ExecStreams } from "./exec-streams.js";

/** The engine's label filter: every pair must match. */
function labelFilter(labels: Record<string, string>): { label: string[] } {
  return { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) };
}

const short = (containerId: string): string => containerId.slice(0, 12);

export class DockerEngine implements EnginePort {
  constructor(readonly docker: Docker) {}

  async ping(signal?: AbortSignal): Promise<void> {
    await withDocker("reach the engine (ping)", () =>
      signal ? raceAbort(this.docker.ping(), signal) : this.docker.ping(),
    );
  }

  async version(signal?: AbortSignal): Promise<string> {
    const info = await withDocker("read the engine's version", () =>
      signal ? raceAbort(this.docker.version(), signal) : this.docker.version(),
    );
    return info.Version;
  }

  async runtimes(signal?: AbortSignal): Promise<EngineRuntimes> {
    signal?.throwIfAborted();
    const info = (await withDocker("list the engine's runtimes (docker info)", () => this.docker.info())) as {
      Runtimes?: Record<string, unknown>;
      DefaultRuntime?: string;
    };
    return { names: Object.keys(info.Runtimes ?? {}), defaultRuntime: info.DefaultRuntime ?? "runc" };
  }

  async create(spec: ContainerSpec, signal?: AbortSignal): Promise<{ id: string } | null> {
    const made = await withDocker(
      `create container ${spec.name}`,
      () => this.docker.createContainer({ ...spec, ...(signal ? { abortSignal: signal } : {}) }),
      { ignore: [409] },
    );
    return made === undefined ? null : { id: made.id };
  }

  start(containerId: string, signal?: AbortSignal): Promise<void> {
    return startContainer(this.docker, containerId, signal);
  }

  async pause(containerId: string): Promise<PauseAnswer> {
    try {
      await this.docker.getContainer(containerId).pause();
      return "paused";
    } catch (error) {
      const status = dockerStatus(error);
      if (status === 404) return "missing";
      if (status === 409) return "conflict";
      throw toSidecarError(error, `pause container ${short(containerId)}`);
    }
  }

  unpause(containerId: string, signal?: AbortSignal): Promise<void> {
    return unpauseContainer(this.docker, containerId, signal);
  }

  async stop(containerId: string, graceSeconds: number): Promise<StopAnswer> {
    try {
      await this.docker.getContainer(containerId).stop({ t: graceSeconds });
      return "stopped";
    } catch (error) {
      const status = dockerStatus(error);
      if (status === 304) return "not-running";
      if (status === 404) return "missing";
      throw toSidecarError(error, `stop container ${short(containerId)}`);
    }
  }

  async kill(containerId: string, signal = "SIGKILL"): Promise<boolean> {
    // 404: gone; 409: not running. Either way nothing was signalled.
    const killed = await withDocker(
      `kill container ${short(containerId)}`,
      () => this.docker.getContainer(containerId).kill({ signal }),
      { ignore: [404, 409] },
    );
    return killed !== undefined;
  }

  remove(containerId: string): Promise<boolean> {
    return removeContainer(this.docker, containerId);
  }

  async waitNotRunning(containerId: string, signal: AbortSignal): Promise<void> {
    await this.docker
      .getContainer(containerId)
      .wait({ condition: "not-running", abortSignal: signal })
      .catch(() => undefined);
  }

  async inspect(containerId: string, signal?: AbortSignal): Promise<ContainerInspect | null> {
    const info = await withDocker(
      `inspect container ${short(containerId)}`,
      () => this.docker.getContainer(containerId).inspect(signal ? { abortSignal: signal } : {}),
      { ignore: [404] },
    );
    // dockerode's type is the engine's whole answer; the port reads a part of it.
    return (info ?? null) as ContainerInspect | null;
  }

  async list(labels: Record<string, string>, signal?: AbortSignal): Promise<ContainerSummary[]> {
    const containers = await withDocker("list containers", () =>
      this.docker.listContainers({
        all: true,
        filters: labelFilter(labels),
        ...(signal ? { abortSignal: signal } : {}),
      }),
    );
    return containers.map((c) => ({
      Id: c.Id,
      Names: c.Names,
      State: c.State,
      Created: c.Created,
      Labels: c.Labels ?? {},
    }));
  }

  exec(containerId: string, options: ExecOptions): Promise<StartedExec> {
    return startExec(this.docker, containerId, options);
  }

  async inspectExec(execId: string, signal?: AbortSignal): Promise<ExecState | null> {
    const info = (await withDocker(
      `inspect exec ${short(execId)}`,
      () => this.docker.getExec(execId).inspect(signal ? { abortSignal: signal } : {}),
      { ignore: [404] },
    )) as { Running?: boolean; ExitCode?: number | null; ContainerID?: string } | undefined;
    if (info === undefined) return null;
    const running = info.Running === true;
    return { running, exitCode: running ? null : (info.ExitCode ?? null), containerId: info.ContainerID ?? "" };
  }

  closeExecs(containerId: string, openedBefore?: number): number {
    return ExecStreams.of(this.docker).destroyContainer(containerId, openedBefore);
  }

  settleExecs(withinMs: number): Promise<void> {
    return ExecStreams.of(this.docker).settled(withinMs);
  }

  closeAllExecs(): number {
    return ExecStreams.of(this.docker).destroyAll();
  }

  async events(labels: Record<string, string>, signal: AbortSignal): Promise<AsyncIterable<ContainerEvent>> {
    const stream = (await withDocker("follow engine events", () =>
      this.docker.getEvents({ filters: { type: ["container"], ...labelFilter(labels) } }),
    )) as unknown as Readable;
    // Registered now, not when the iteration begins: an abort before the first event still closes the connection.
    const close = (): void => void stream.destroy();
    if (signal.aborted) close();
    else {
      signal.addEventListener("abort", close, { once: true });
      stream.once("close", () => signal.removeEventListener("abort", close));
    }
    return parseEvents(stream);
  }

  logs(containerId: string, options: { tail?: number | undefined; signal?: AbortSignal | undefined }): Promise<string> {
    return readContainerLogs(this.docker, containerId, options.tail, options.signal);
  }
}

interface RawEvent {
  Action?: string;
  id?: string;
  timeNano?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** The engine's newline-delimited JSON events as ContainerEvents; a line that does not parse is skipped. */
async function* parseEvents(stream: Readable): AsyncGenerator<ContainerEvent> {
  const lines = new LineSplitter();
  try {
    for await (const chunk of stream) {
      for (const line of lines.push(chunk as Buffer)) {
        if (line.kind !== "line" || line.text.trim() === "") continue;
        let raw: RawEvent;
        try {
          raw = JSON.parse(line.text) as RawEvent;
        } catch {
          continue;
        }
        const containerId = raw.id ?? raw.Actor?.ID;
        if (raw.Action === undefined || containerId === undefined) continue;
        yield {
          action: raw.Action,
          containerId,
          at: raw.timeNano === undefined ? undefined : raw.timeNano / 1e6,
          attributes: raw.Actor?.Attributes ?? {},
        };
      }
    }
  } finally {
    stream.destroy();
  }
}
