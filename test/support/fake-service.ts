/**
 * A scripted SidecarService for the RPC and CLI tests: records every call, emits a turn's events
 * through the hooks, holds turns until released or aborted, and can be told to fail any method.
 * Also: a raw line client for the socket and a deadline-bound poll, so no test sleeps.
 */
import { LineSplitter } from "../../src/shared/line-splitter.js";
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { ThreadEvent, ThreadItem } from "@openai/codex-sdk";
import type {
  AttachTurnHooks,
  TurnInfo,
  TurnSummary,
  IsolationReport,
  EnsureWorkspaceResult,
  HealthResult,
  RunTurnParams,
  SidecarService,
  TurnHooks,
  TurnResult,
  WorkspaceParams,
  WorkspaceSummary,
} from "../../src/service.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { startRpcServer, type RpcServer, type RpcServerOptions } from "../../src/rpc/server.js";
import type { WorkspacePolicy } from "../../src/policy/workspace-policy.js";

export interface FakeCall {
  method: keyof SidecarService;
  params: unknown;
}

export interface FakeTurn {
  turnId: string;
  params: RunTurnParams;
  /** The hooks' signal was aborted (the client went away). */
  aborted: boolean;
  /** turn.cancel reached it. */
  cancelled: boolean;
  release(): void;
}

export interface TurnScript {
  /** Events after the sidecar's own "accepted" event. */
  events?: ThreadEvent[];
  /** Wait after the events until released, cancelled or aborted. */
  hold?: boolean;
  finalResponse?: string;
  /** The result's items (default none). */
  items?: ThreadItem[];
}

const NOW = "2024-01-01T00:00:00.000Z";

export const SAMPLE_EVENTS: ThreadEvent[] = [
  { type: "thread.started", thread_id: "0199a213-81c0-7800-8aa1-bbab2a035a53" },
  { type: "turn.started" },
  {
    type: "item.started",
    item: { id: "i1", type: "command_execution", command: "ls -la", aggregated_output: "", status: "in_progress" },
  },
  {
    type: "item.completed",
    item: {
      id: "i1",
      type: "command_execution",
      command: "ls -la",
      aggregated_output: "total 0\nfile.txt\n",
      exit_code: 0,
      status: "completed",
    },
  },
  { type: "item.completed", item: { id: "i2", type: "agent_message", text: "Done: one file." } },
  {
    type: "turn.completed",
    usage: {
      input_tokens: 10,
      cached_input_tokens: 2,
      cache_write_input_tokens: 0,
      output_tokens: 5,
      reasoning_output_tokens: 1,
    },
  },
];

export class FakeSidecarService implements SidecarService {
  readonly calls: FakeCall[] = [];
  readonly workspaces = new Map<string, WorkspaceSummary>();
  readonly turns = new Map<string, FakeTurn>();
  /** A method set here throws the value instead of answering. */
  readonly failures = new Map<keyof SidecarService, unknown>();
  /** workspace.logs for these workspace ids waits until the gate is opened. */
  readonly logGates = new Map<string, Promise<void>>();
  turnScript: (params: RunTurnParams) => TurnScript = () => ({ events: SAMPLE_EVENTS });
  #nextTurn = 1;

  callsOf(method: keyof SidecarService): unknown[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.params);
  }

  /** Holds workspace.logs for `workspaceId` until the returned function is called. */
  gateLogs(workspaceId: string): () => void {
    let open!: () => void;
    this.logGates.set(workspaceId, new Promise<void>((resolve) => (open = resolve)));
    return () => {
      this.logGates.delete(workspaceId);
      open();
    };
  }

  #record(method: keyof SidecarService, params: unknown): void {
    this.calls.push({ method, params });
    if (this.failures.has(method)) throw this.failures.get(method);
  }

  async health(): Promise<HealthResult> {
    this.#record("health", {});
    return {
      version: "0.0.0-test",
      codexVersion: "0.171.0",
      codex: {
        version: "0.171.0",
        requested: "0.171.0",
        sdk: "0.163.0",
        tested: true,
        flags: ["--ignore-user-config", "--ignore-rules"],
      },
      docker: { reachable: true, serverVersion: "27.0.0" },
      image: { ref: "alive-codex-runtime:test", present: true },
      workspaces: { running: this.workspaces.size, total: this.workspaces.size },
      turns: { running: this.turns.size, detached: 0 },
      disk: { enforcement: "none", attached: 0, requested: "off" },
    };
  }

  async ensureWorkspace(params: WorkspaceParams): Promise<EnsureWorkspaceResult> {
    this.#record("ensureWorkspace", params);
    const existing = this.workspaces.get(params.workspaceId);
    const summary: WorkspaceSummary = existing ?? {
      workspaceId: params.workspaceId,
      userId: params.userId,
      containerId: `c0ffee${String(this.workspaces.size).padStart(58, "0")}`,
      containerName: `alive-codex-${params.workspaceId}`,
      state: "running",
      createdAt: NOW,
      lastActiveAt: NOW,
      activeTurnId: null,
      egress: { mode: "public" },
      network: { mode: "none", via: "sidecar", egressRefusals: 0 },
      runtime: params.runtime ?? "runc",
      isolation: null,
    };
    summary.isolation = sampleIsolation(summary.containerId);
    this.workspaces.set(params.workspaceId, summary);
    return {
      workspaceId: summary.workspaceId,
      containerId: summary.containerId,
      containerName: summary.containerName,
      created: existing === undefined,
      state: "running",
      isolation: summary.isolation,
    };
  }

  async listWorkspaces(): Promise<{ workspaces: WorkspaceSummary[] }> {
    this.#record("listWorkspaces", {});
    return { workspaces: [...this.workspaces.values()] };
  }

  async removeWorkspace(params: { workspaceId: string; purgeHome?: boolean }): Promise<{ removed: boolean }> {
    this.#record("removeWorkspace", params);
    return { removed: this.workspaces.delete(params.workspaceId) };
  }

  async workspaceLogs(params: { workspaceId: string; tail?: number }): Promise<{ logs: string }> {
    this.#record("workspaceLogs", params);
    await this.logGates.get(params.workspaceId);
    return { logs: `logs of ${params.workspaceId}${params.tail === undefined ? "" : ` (tail ${params.tail})`}\n` };
  }

  async runTurn(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult> {
    this.#record("runTurn", params);
    const summary = this.workspaces.get(params.workspaceId);
    if (summary === undefined && params.workspace === undefined) {
      throw new SidecarError(ErrorCode.unknownWorkspace, `unknown workspace ${params.workspaceId}`, {
        data: { field: "workspaceId", reason: "ensure it first" },
      });
    }
    if (params.workspace !== undefined) await this.ensureWorkspace(params.workspace);
    const workspace = this.workspaces.get(params.workspaceId) as WorkspaceSummary;
    if (workspace.activeTurnId !== null) {
      throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${params.workspaceId} is busy`, {
        data: { field: "workspaceId", reason: `turn ${workspace.activeTurnId} is running` },
      });
    }
    const turnId = params.turnId ?? `turn-${this.#nextTurn++}`;
    let seq = 0;
    const emit = (event: Parameters<TurnHooks["onEvent"]>[2]): void => hooks.onEvent(turnId, seq++, event);

    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const turn: FakeTurn = { turnId, params, aborted: false, cancelled: false, release };
    this.turns.set(turnId, turn);
    workspace.activeTurnId = turnId;
    const onAbort = (): void => {
      turn.aborted = true;
      release();
    };
    if (hooks.signal?.aborted) onAbort();
    else hooks.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      emit({
        type: "sidecar.turn.accepted",
        turn_id: turnId,
        workspace_id: params.workspaceId,
        thread_id: params.threadId ?? null,
      });
      const script = this.turnScript(params);
      for (const event of script.events ?? []) emit(event);
      if (script.hold === true && !turn.aborted) await released;
      const stopped = turn.aborted || turn.cancelled;
      return {
        turnId,
        threadId: params.threadId ?? "0199a213-81c0-7800-8aa1-bbab2a035a53",
        status: stopped ? "cancelled" : "completed",
        finalResponse: stopped ? "" : (script.finalResponse ?? "Done: one file."),
        items: stopped ? [] : (script.items ?? []),
        usage: stopped
          ? null
          : {
              input_tokens: 10,
              cached_input_tokens: 2,
              cache_write_input_tokens: 0,
              output_tokens: 5,
              reasoning_output_tokens: 1,
            },
        turnUsage: stopped
          ? null
          : {
              input_tokens: 10,
              cached_input_tokens: 2,
              cache_write_input_tokens: 0,
              output_tokens: 5,
              reasoning_output_tokens: 1,
            },
        resources: { cpuSeconds: 0.01, peakMemoryBytes: 1_048_576, wallMs: 1 },
        tokens: stopped
          ? { input: 0, cached: 0, output: 0, reasoning: 0 }
          : { input: 10, cached: 2, output: 5, reasoning: 1 },
      };
    } finally {
      hooks.signal?.removeEventListener("abort", onAbort);
      workspace.activeTurnId = null;
    }
  }

  async cancelTurn(params: { turnId: string }): Promise<{ cancelled: boolean }> {
    this.#record("cancelTurn", params);
    const turn = this.turns.get(params.turnId);
    if (turn === undefined)
      throw new SidecarError(ErrorCode.unknownTurn, `unknown turn ${params.turnId}`, {
        data: { field: "turnId", reason: "no such turn" },
      });
    turn.cancelled = true;
    turn.release();
    return { cancelled: true };
  }

  /** The journal's methods: the fake keeps no journal, so every turn is unknown to them. */
  async attachTurn(params: { turnId: string; afterSeq?: number }, _hooks?: AttachTurnHooks): Promise<TurnResult> {
    this.#record("attachTurn", params);
    throw new SidecarError(ErrorCode.unknownTurn, `unknown turn ${params.turnId}`, {
      data: { field: "turnId", reason: "the fake service keeps no journal" },
    });
  }

  async getTurn(params: { turnId: string }): Promise<TurnInfo> {
    this.#record("getTurn", params);
    throw new SidecarError(ErrorCode.unknownTurn, `unknown turn ${params.turnId}`, {
      data: { field: "turnId", reason: "the fake service keeps no journal" },
    });
  }

  async listTurns(params: { workspaceId?: string; status?: TurnSummary["status"] }): Promise<{ turns: TurnSummary[] }> {
    this.#record("listTurns", params);
    return { turns: [] };
  }
}

/** Polls `condition` until it holds or the deadline passes (no fixed sleeps). */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Parses every line the server sends as JSON (a line that is not JSON fails the test that reads it). */
export function onJsonLines(socket: net.Socket, receive: (message: unknown) => void): void {
  const lines = new LineSplitter(Number.MAX_SAFE_INTEGER);
  socket.on("data", (chunk: Buffer) => {
    for (const line of lines.push(chunk)) if (line.kind === "line") receive(JSON.parse(line.text));
  });
}

/** A bare newline-JSON client, to send exactly the bytes a test wants and read every line back. */
export class RawClient {
  readonly lines: unknown[] = [];
  readonly socket: net.Socket;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    onJsonLines(socket, (message) => this.lines.push(message));
    socket.on("error", () => {});
    socket.on("close", () => (this.closed = true));
  }

  static connect(socketPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      socket.once("connect", () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  send(value: unknown): void {
    this.socket.write(`${JSON.stringify(value)}\n`);
  }

  sendRaw(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The response with this id (waits for it). */
  async response(id: string | number | null, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const find = (): Record<string, unknown> | undefined =>
      this.lines.find(
        (l) => typeof l === "object" && l !== null && "id" in l && (l as { id: unknown }).id === id && !("method" in l),
      ) as Record<string, unknown> | undefined;
    await waitFor(() => find() !== undefined, `the response to id ${JSON.stringify(id)}`, timeoutMs);
    return find() as Record<string, unknown>;
  }

  notifications(method: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => (l as { method?: unknown }).method === method && !("id" in (l as object))) as Array<
      Record<string, unknown>
    >;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A tmp dir with a workspace root, an RPC server on a socket in it, backed by a FakeSidecarService. */
export interface TestServer {
  dir: string;
  socketPath: string;
  workspaceRoot: string;
  /** An existing directory inside the root, usable as workspacePath. */
  workspacePath: string;
  service: FakeSidecarService;
  server: RpcServer;
  logLines: string[];
  policy: WorkspacePolicy;
  stop(): Promise<void>;
}

export async function startTestServer(
  options: Partial<Pick<RpcServerOptions, "closeGraceMs" | "maxLineBytes" | "maxUnreadBytes">> = {},
): Promise<TestServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-rpc-"));
  const workspaceRoot = path.join(dir, "workspaces");
  const workspacePath = path.join(workspaceRoot, "ws-1");
  await fs.mkdir(workspacePath, { recursive: true });
  const socketPath = path.join(dir, "sidecar.sock");
  const service = new FakeSidecarService();
  const logLines: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => logLines.push(line) });
  // The default ranges (src/config.ts): uids from 10000.
  const policy: WorkspacePolicy = {
    uidRange: { min: 10000, max: 65533 },
    gidRange: { min: 1000, max: 65533 },
    allowRoot: false,
    workspaceRoots: [workspaceRoot],
  };
  const server = await startRpcServer({
    socketPath,
    socketGroup: null,
    service,
    policy,
    log,
    version: "0.0.0-test",
    ...options,
  });
  return {
    dir,
    socketPath,
    workspaceRoot,
    workspacePath,
    service,
    server,
    logLines,
    policy,
    stop: async () => {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** An isolation report as a runc workspace measures it (for the CLI's table). */
export function sampleIsolation(containerId: string): IsolationReport {
  return {
    containerId,
    runtime: "runc",
    user: { uid: 10001, gid: 10001, groups: [10001] },
    capabilities: {
      effective: "0000000000000000",
      permitted: "0000000000000000",
      bounding: "0000000000000000",
      ambient: "0000000000000000",
    },
    noNewPrivs: true,
    seccomp: "filter",
    readOnlyRoot: true,
    mounts: [
      { path: "/", readOnly: true },
      { path: "/home/alive", readOnly: false },
    ],
    limits: { pids: 512, memoryBytes: 2048 * 1024 * 1024, cpus: 1, source: "cgroup" },
    network: { interfaces: ["lo"], defaultRoute: false },
    egress: { policy: { mode: "public" }, enforcedBy: "sidecar-proxy" },
    modelKey: "proxy",
    hostReachable: false,
    hostProbe: "192.0.2.2 rc=1 bash: connect: Network is unreachable",
    measuredAt: NOW,
    measuredMs: 42,
  };
}
