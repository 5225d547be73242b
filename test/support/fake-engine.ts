/**
 * An in-memory EnginePort, to drive the workspace manager's own logic (single flight, replacement,
 * adoption, the idle transitions and their races) in unit tests that run in seconds. It keeps
 * containers in a map, reports their changes on its event stream and answers the isolation probe
 * with what each container's spec asked for. It is not an engine: what an engine does (exec
 * streams, the freezer, gVisor, events under load) is tested against the real one
 * (test/integration/), never here.
 */
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import type {
  ContainerEvent,
  ContainerInspect,
  ContainerSpec,
  ContainerSummary,
  EnginePort,
  EngineRuntimes,
  ExecOptions,
  ExecState,
  ExecResult,
  PauseAnswer,
  StartedExec,
  StopAnswer,
} from "../../src/docker/engine-port.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { isGvisorRuntime } from "../../src/workspace/runtimes.js";

export type FakeState = "created" | "running" | "paused" | "exited";

export interface FakeContainer {
  id: string;
  name: string;
  spec: ContainerSpec;
  state: FakeState;
  /** Seconds since the epoch. */
  created: number;
}

/** The calls a test can hold, to pin a race: the call waits until released. */
export type HoldableCall = "create" | "start" | "pause" | "unpause" | "stop" | "remove" | "inspect" | "list";

export interface Hold {
  /** Resolves when a call reached the hold (and waits there). */
  reached: Promise<void>;
  release(): void;
}

/** What an exec answers: given the container and the options, an exit code and output. */
export type ExecHandler = (container: FakeContainer, options: ExecOptions) => ExecResult | undefined;

export class FakeEngine implements EnginePort {
  readonly containers = new Map<string, FakeContainer>();
  /** Every call, in order, as "method target" (the container's name where it has one). */
  readonly calls: string[] = [];
  runtimeInfo: EngineRuntimes = { names: ["runc", "runsc"], defaultRuntime: "runc" };
  /** Answers execs before the default (the isolation probe, else exit 0 with no output); undefined: not handled. */
  onExec: ExecHandler | null = null;
  readonly #holds = new Map<HoldableCall, { reached: () => void; released: Promise<void> }>();
  readonly #subscribers = new Set<{
    labels: Record<string, string>;
    push: (event: ContainerEvent) => void;
    end: () => void;
  }>();

  /** The next call of `method` waits until released. */
  hold(method: HoldableCall): Hold {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.#holds.set(method, { reached, released });
    return { reached: reachedPromise, release };
  }

  /** Containers whose name is `name` (there is at most one). */
  byName(name: string): FakeContainer | undefined {
    return [...this.containers.values()].find((c) => c.name === name);
  }

  count(method: string): number {
    return this.calls.filter((call) => call.split(" ")[0] === method).length;
  }

  async ping(): Promise<void> {
    this.calls.push("ping");
  }

  async version(): Promise<string> {
    return "fake";
  }

  async runtimes(): Promise<EngineRuntimes> {
    this.calls.push("runtimes");
    return this.runtimeInfo;
  }

  async create(spec: ContainerSpec): Promise<{ id: string } | null> {
    await this.#enter("create", spec.name);
    if (this.byName(spec.name)) return null;
    const container: FakeContainer = {
      id: randomBytes(32).toString("hex"),
      name: spec.name,
      spec: structuredClone(spec),
      state: "created",
      created: Math.floor(Date.now() / 1000),
    };
    this.containers.set(container.id, container);
    this.#emit(container, "create");
    return { id: container.id };
  }

  async start(containerId: string): Promise<void> {
    await this.#enter("start", containerId);
    const container = this.#get(containerId);
    if (container.state === "running" || container.state === "paused") return;
    container.state = "running";
    this.#emit(container, "start");
  }

  async pause(containerId: string): Promise<PauseAnswer> {
    await this.#enter("pause", containerId);
    const container = this.#find(containerId);
    if (!container) return "missing";
    if (container.state !== "running") return "conflict";
    container.state = "paused";
    this.#emit(container, "pause");
    return "paused";
  }

  async unpause(containerId: string): Promise<void> {
    await this.#enter("unpause", containerId);
    const container = this.#get(containerId);
    if (container.state !== "paused")
      throw new SidecarError(
        ErrorCode.internal,
        `Docker failed to unpause container ${containerId.slice(0, 12)}: it is not paused`,
      );
    container.state = "running";
    this.#emit(container, "unpause");
  }

  async stop(containerId: string): Promise<StopAnswer> {
    await this.#enter("stop", containerId);
    const container = this.#find(containerId);
    if (!container) return "missing";
    if (container.state !== "running" && container.state !== "paused") return "not-running";
    container.state = "exited";
    this.#emit(container, "die");
    return "stopped";
  }

  async kill(containerId: string): Promise<boolean> {
    this.calls.push(`kill ${this.#label(containerId)}`);
    const container = this.#find(containerId);
    if (!container || container.state !== "running") return false;
    container.state = "exited";
    this.#emit(container, "die");
    return true;
  }

  async remove(containerId: string): Promise<boolean> {
    await this.#enter("remove", containerId);
    const container = this.#find(containerId);
    if (!container) return false;
    if (container.state === "running" || container.state === "paused") this.#emit(container, "die");
    this.containers.delete(container.id);
    this.#emit(container, "destroy");
    return true;
  }

  async waitNotRunning(): Promise<void> {}

  async inspect(containerId: string): Promise<ContainerInspect | null> {
    await this.#enter("inspect", containerId);
    const container = this.#find(containerId);
    if (!container) return null;
    const { spec } = container;
    return {
      Id: container.id,
      Name: `/${container.name}`,
      State: {
        Status: container.state,
        Running: container.state === "running" || container.state === "paused",
        Paused: container.state === "paused",
        ExitCode: 0,
        OOMKilled: false,
      },
      Config: {
        Image: spec.Image,
        ...(spec.User === undefined ? {} : { User: spec.User }),
        Labels: { ...spec.Labels },
      },
      HostConfig: { ...spec.HostConfig, Runtime: spec.HostConfig?.Runtime ?? this.runtimeInfo.defaultRuntime },
    };
  }

  async list(labels: Record<string, string>): Promise<ContainerSummary[]> {
    await this.#enter("list", "");
    return [...this.containers.values()]
      .filter((c) => matches(c.spec.Labels ?? {}, labels))
      .map((c) => ({
        Id: c.id,
        Names: [`/${c.name}`],
        State: c.state,
        Created: c.created,
        Labels: { ...c.spec.Labels },
      }));
  }

  async exec(containerId: string, options: ExecOptions): Promise<StartedExec> {
    this.calls.push(`exec ${this.#label(containerId)}`);
    const container = this.#get(containerId);
    if (container.state !== "running")
      throw new SidecarError(
        ErrorCode.internal,
        `Docker failed to run ${options.cmd[0] ?? "a command"} in container ${containerId.slice(0, 12)}: it is not running`,
      );
    const result = this.onExec?.(container, options) ?? defaultExec(container, options);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    stdout.end(result.stdout);
    stderr.end(result.stderr);
    const exit = new Promise<number | null>((resolve) => setImmediate(() => resolve(result.exitCode)));
    const id = randomBytes(8).toString("hex");
    this.execs.set(id, { running: false, exitCode: result.exitCode, containerId: container.id });
    return { id, stdin: null, stdout, stderr, exit };
  }

  /** The execs started, as inspectExec answers them (a test may set one running). */
  readonly execs = new Map<string, ExecState>();

  async inspectExec(execId: string): Promise<ExecState | null> {
    this.calls.push(`inspectExec ${execId}`);
    return this.execs.get(execId) ?? null;
  }

  closeExecs(): number {
    return 0;
  }

  closeAllExecs(): number {
    return 0;
  }

  async settleExecs(): Promise<void> {}

  async events(labels: Record<string, string>, signal: AbortSignal): Promise<AsyncIterable<ContainerEvent>> {
    this.calls.push("events");
    const queue: ContainerEvent[] = [];
    let wake: (() => void) | null = null;
    let ended = false;
    const subscriber = {
      labels,
      push: (event: ContainerEvent): void => {
        queue.push(event);
        wake?.();
      },
      end: (): void => {
        ended = true;
        wake?.();
      },
    };
    this.#subscribers.add(subscriber);
    const subscribers = this.#subscribers;
    signal.addEventListener("abort", subscriber.end, { once: true });
    return (async function* follow(): AsyncGenerator<ContainerEvent> {
      try {
        while (!ended) {
          const event = queue.shift();
          if (event) yield event;
          else await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        subscribers.delete(subscriber);
      }
    })();
  }

  /** Ends every event stream as a lost connection would. */
  dropEventStreams(): void {
    for (const subscriber of this.#subscribers) subscriber.end();
  }

  async logs(): Promise<string> {
    return "";
  }

  async #enter(method: HoldableCall, target: string): Promise<string> {
    this.calls.push(`${method} ${this.#label(target)}`.trimEnd());
    const held = this.#holds.get(method);
    if (held) {
      this.#holds.delete(method);
      held.reached();
      await held.released;
    }
    return target;
  }

  #find(idOrName: string): FakeContainer | undefined {
    return this.containers.get(idOrName) ?? this.byName(idOrName);
  }

  #get(idOrName: string): FakeContainer {
    const container = this.#find(idOrName);
    if (!container)
      throw new SidecarError(
        ErrorCode.internal,
        `Docker failed to find container ${idOrName.slice(0, 12)}: no such container`,
        { data: { dockerStatus: 404 } },
      );
    return container;
  }

  #label(idOrName: string): string {
    return this.#find(idOrName)?.name ?? idOrName;
  }

  #emit(container: FakeContainer, action: string): void {
    const attributes = { ...container.spec.Labels, name: container.name };
    for (const subscriber of this.#subscribers) {
      if (matches(attributes, subscriber.labels))
        subscriber.push({ action, containerId: container.id, at: Date.now(), attributes });
    }
  }
}

function matches(labels: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([key, value]) => labels[key] === value);
}

/** The isolation probe's answer (workspace/isolation.ts) holding exactly what the spec asked for; anything else exits 0 silently. */
function defaultExec(container: FakeContainer, options: ExecOptions): ExecResult {
  if (!options.cmd.some((arg) => arg.includes("@@status"))) return { exitCode: 0, stdout: "", stderr: "" };
  return { exitCode: 0, stdout: isolationAnswer(container.spec), stderr: "" };
}

export function isolationAnswer(spec: ContainerSpec): string {
  const [uid = "0", gid = "0"] = (spec.User ?? "").split(":");
  const host = spec.HostConfig ?? {};
  const zero = "0000000000000000";
  const mounts = [
    "1 0 0:1 / / ro,relatime - overlay overlay ro",
    ...(host.Mounts ?? []).map(
      (m, i) => `${i + 2} 1 0:1 / ${m.Target} ${m.ReadOnly ? "ro" : "rw"},relatime - bind none rw`,
    ),
    ...Object.entries(host.Tmpfs ?? {}).map(
      ([target, opts], i) =>
        `${i + 100} 1 0:2 / ${target} ${opts.split(",").includes("ro") ? "ro" : "rw"},nosuid - tmpfs tmpfs rw`,
    ),
  ];
  return [
    "@@status",
    `Uid:\t${uid}\t${uid}\t${uid}\t${uid}`,
    `Gid:\t${gid}\t${gid}\t${gid}\t${gid}`,
    "Groups:\t",
    "NoNewPrivs:\t1",
    // gVisor's Sentry is the filter: it reports no seccomp mode of its own.
    `Seccomp:\t${isGvisorRuntime(host.Runtime) ? 0 : 2}`,
    ...["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map((cap) => `${cap}:\t${zero}`),
    "@@setpriv",
    "@@mountinfo",
    ...mounts,
    "@@cgroup",
    `/sys/fs/cgroup/pids.max ${host.PidsLimit ?? "max"}`,
    `/sys/fs/cgroup/memory.max ${host.Memory ?? "max"}`,
    `/sys/fs/cgroup/cpu.max ${host.CpuQuota ?? "max"} ${host.CpuPeriod ?? 100000}`,
    "@@route",
    "Iface\tDestination\tGateway",
    "@@net",
    "Inter-|   Receive",
    " face |bytes",
    "    lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
    "@@connect",
    "@@end",
    "",
  ].join("\n");
}
