/**
 * Runs codex turns inside workspace containers through @openai/codex-sdk.
 *
 * The SDK spawns the exec bridge script (bridge.ts); the runner runs the real codex in the
 * container with the engine's exec API and relays its stdio. Events reach the caller as codex
 * emits them. Every turn has a deadline; an aborted turn's processes are swept from the container
 * (sweep.ts). A failed turn is a result, not an exception.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { Codex, type ThreadEvent, type ThreadItem, type ThreadOptions, type Usage } from "@openai/codex-sdk";
import type Docker from "dockerode";
import { ErrorCode, SidecarError, errorMessage, invalidParams } from "../errors.js";
import type { Logger } from "../log.js";
import { runExec } from "../docker/exec.js";
import type { RunTurnParams, TurnHooks, TurnResult, TurnStatus } from "../service.js";
import type { WorkspaceManager, WorkspaceRecord } from "../workspace/manager.js";
import { isInside } from "../workspace/policy.js";
import { containerEnv } from "../workspace/spec.js";
import { ExecBridge } from "./bridge.js";
import { buildCodexConfig } from "./config-overrides.js";
import { CONTAINER_TMPDIR, buildCodexExecEnv } from "./env.js";
import { Launchers, encodeLaunchHeader, type LaunchTarget } from "./launcher.js";
import { sweepCommand } from "./sweep.js";
import { ThreadUsageStore, findRollout, isThreadId, usageDelta } from "./threads.js";

export interface TurnRunnerOptions {
  docker: Docker;
  launchers: Launchers;
  log: Logger;
  workspaces: WorkspaceManager;
  bridgeScript: string;
  bridgesDir: string;
  openaiBaseUrl: string | null;
  codexApiKey: string | null;
  aliveApiUrl: string | null;
  aliveMcpToken: string | null;
  nodePath: string | null;
  defaultModel: string | null;
  turnTimeoutMs: number;
  maxTurns: number;
}

interface RunningTurn {
  turnId: string;
  workspaceId: string;
  cancel: AbortController;
  done: Promise<unknown>;
}

/** How long turn.cancel waits for the turn to settle before answering anyway. */
const CANCEL_SETTLE_MS = 10_000;

/** What is kept of codex's stderr for an error message. */
const STDERR_TAIL = 8 * 1024;

/** Codex's own sandbox (read-only, workspace-write) runs commands under this bubblewrap. */
const CODEX_BWRAP = "/opt/codex/codex-resources/bwrap";

export class TurnRunner {
  private readonly turns = new Map<string, RunningTurn>();
  /** Per container: why codex's own sandbox cannot work there (null: it can). */
  private readonly sandboxSupport = new Map<string, Promise<string | null>>();
  private closing = false;

  constructor(private readonly options: TurnRunnerOptions) {}

  get running(): number {
    return this.turns.size;
  }

  activeTurnIds(): string[] {
    return [...this.turns.keys()];
  }

  /**
   * Cancels a running turn and waits (a bounded while) until it has settled: its processes are
   * gone and the workspace takes a new turn as soon as this resolves.
   */
  async cancel(turnId: string): Promise<boolean> {
    const turn = this.turns.get(turnId);
    if (!turn) {
      throw new SidecarError(ErrorCode.unknownTurn, `unknown turn ${JSON.stringify(turnId)}`, {
        data: { field: "turnId", reason: "no running turn has this id (it may have finished already)" },
      });
    }
    if (turn.cancel.signal.aborted) return false;
    turn.cancel.abort();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([turn.done.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, CANCEL_SETTLE_MS)))]);
    clearTimeout(timer);
    return true;
  }

  /** Starts the workspace's launcher for its next turn, if it is idle and running. */
  prewarm(workspaceId: string): void {
    const record = this.options.workspaces.find(workspaceId);
    if (!this.closing && record && record.state === "running" && record.activeTurnId === null) this.options.launchers.prewarm(launchTarget(record));
  }

  /** Forgets the workspace's waiting launcher, before its container is removed. */
  discardLauncher(workspaceId: string): void {
    this.options.launchers.discard(workspaceId);
  }

  /** Lets running turns finish within graceMs, then cancels the rest and waits for them. */
  async shutdown(graceMs: number): Promise<void> {
    this.closing = true;
    const pending = [...this.turns.values()];
    const all = Promise.allSettled(pending.map((t) => t.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    if ((await Promise.race([all, graceOver])) === "timeout") {
      for (const turn of this.turns.values()) turn.cancel.abort();
      await all;
    }
    clearTimeout(timer);
    this.options.launchers.close();
  }

  async run(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult> {
    const { workspaces } = this.options;
    // Everything that can refuse the turn without a container is checked before a workspace
    // carried in the call is ensured: a refused turn.run makes nothing.
    const known = workspaces.find(params.workspaceId);
    const target = params.workspace ?? known?.params;
    if (!target) workspaces.get(params.workspaceId);
    if (target?.network === "none") {
      throw new SidecarError(ErrorCode.notAllowed, `workspace ${params.workspaceId} has network "none": codex could not reach the model API`, {
        data: { field: "network", reason: 'codex needs the model API; ensure the workspace with network "default" to run turns' },
      });
    }
    const turnId = params.turnId ?? randomUUID();
    this.checkTurnSlot(turnId);
    workspaces.assertIdle(params.workspaceId);
    this.checkInput(params, target!.workspacePath);
    if (params.threadId !== undefined) await this.checkThread(params.threadId, params.workspaceId);
    if (params.workspace) await workspaces.ensure(params.workspace, hooks.signal);
    let record = workspaces.get(params.workspaceId);
    if (record.state !== "running") {
      await workspaces.ensure(record.params, hooks.signal);
      record = workspaces.get(params.workspaceId);
    }
    const sandboxMode = params.options?.sandboxMode ?? "danger-full-access";
    if (sandboxMode !== "danger-full-access") await this.checkSandbox(sandboxMode, record);
    this.checkTurnSlot(turnId);
    workspaces.acquireTurn(params.workspaceId, turnId);
    const cancel = new AbortController();
    const done = this.execute(turnId, params, record, hooks, cancel).finally(() => {
      this.turns.delete(turnId);
      workspaces.releaseTurn(params.workspaceId, turnId);
      this.prewarm(params.workspaceId);
    });
    this.turns.set(turnId, { turnId, workspaceId: params.workspaceId, cancel, done });
    return done;
  }

  private checkTurnSlot(turnId: string): void {
    if (this.turns.has(turnId)) throw invalidParams("turnId", "a turn with this id is already running", turnId);
    if (this.turns.size >= this.options.maxTurns) {
      throw new SidecarError(ErrorCode.limitReached, `${this.turns.size} turns are running (limit ${this.options.maxTurns})`, {
        data: { field: "turnId", reason: "turn limit reached; retry later or raise ALIVE_CODEX_MAX_TURNS" },
      });
    }
  }

  private checkInput(params: RunTurnParams, workspacePath: string): void {
    if (typeof params.input === "string") return;
    for (const [index, item] of params.input.entries()) {
      if (item.type === "local_image" && !isInside(workspacePath, path.resolve(item.path))) {
        throw new SidecarError(ErrorCode.notAllowed, `input[${index}].path is outside the workspace`, {
          data: { field: `input[${index}].path`, reason: `local images must lie inside the workspace path ${workspacePath}` },
        });
      }
    }
  }

  /**
   * read-only and workspace-write make codex run every command under bubblewrap, which needs
   * user namespaces. The hardened container (no capabilities, the engine's seccomp profile)
   * refuses them, so each command would fail while the turn "completed". Probe once per container
   * and refuse the turn with the reason instead.
   */
  private async checkSandbox(mode: string, record: WorkspaceRecord): Promise<void> {
    let probe = this.sandboxSupport.get(record.containerId);
    if (!probe) {
      probe = runExec(this.options.docker, record.containerId, {
        cmd: [CODEX_BWRAP, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "/bin/true"],
        user: `${record.params.uid}:${record.params.gid}`,
      }).then((result) => (result.exitCode === 0 ? null : result.stderr.trim() || `bubblewrap exited with ${result.exitCode}`));
      this.sandboxSupport.set(record.containerId, probe);
      probe.catch(() => this.sandboxSupport.delete(record.containerId));
    }
    const reason = await probe;
    if (reason !== null) {
      throw new SidecarError(ErrorCode.notAllowed, `sandboxMode "${mode}" cannot work inside the workspace container`, {
        data: {
          field: "options.sandboxMode",
          reason: `codex's sandbox needs bubblewrap with user namespaces, which the hardened container does not allow (all capabilities dropped, Docker's default seccomp profile); the container itself is the sandbox, so use "danger-full-access". bubblewrap said: ${reason}`,
        },
      });
    }
  }

  private async checkThread(threadId: string, workspaceId: string): Promise<void> {
    if (!isThreadId(threadId)) throw invalidParams("threadId", "must be a codex thread id (a UUID)", threadId);
    if ((await findRollout(this.options.workspaces.paths(workspaceId).codexHome, threadId)) === null) {
      throw invalidParams("threadId", `no thread with this id exists in workspace ${workspaceId}`, threadId);
    }
  }

  private async execute(turnId: string, params: RunTurnParams, record: WorkspaceRecord, hooks: TurnHooks, cancel: AbortController): Promise<TurnResult> {
    const { log: baseLog } = this.options;
    const log = baseLog.child({ workspaceId: params.workspaceId, turnId, containerId: record.containerId });
    const started = Date.now();
    const timeoutMs = params.options?.timeoutMs ?? this.options.turnTimeoutMs;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([cancel.signal, deadline, ...(hooks.signal ? [hooks.signal] : [])]);
    let seq = 0;
    const emit = (event: Parameters<TurnHooks["onEvent"]>[2]): void => {
      try {
        hooks.onEvent(turnId, seq, event);
      } catch (error) {
        log.warn("event listener threw", { error: errorMessage(error) });
      }
      seq += 1;
    };
    emit({ type: "sidecar.turn.accepted", turn_id: turnId, workspace_id: params.workspaceId, thread_id: params.threadId ?? null });
    log.info("turn started", { threadId: params.threadId ?? null });
    record.sink.write(`turn=${turnId} thread=${params.threadId ?? "new"} event=started`);

    const state = { threadId: params.threadId ?? null, items: [] as ThreadItem[], finalResponse: "", usage: null as Usage | null, failure: null as { code: string; message: string } | null };
    const container = new ContainerSide(this.options, record, turnId, log);
    let status: TurnStatus = "completed";
    let containerTask: Promise<void> = Promise.resolve();
    let containerError: unknown;
    // On abort, act at once: the SDK only notices when its stdout ends, and the bridge script's
    // relays keep that open until the container side finishes.
    const onAbort = (): void => void container.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      await container.prepare();
      const thread = this.createThread(params, record, container.bridgeEnv);
      containerTask = container.run(signal).catch((error: unknown) => {
        containerError = error;
      });
      const { events } = await thread.runStreamed(params.input, { ...(params.options?.outputSchema ? { outputSchema: params.options.outputSchema } : {}), signal });
      for await (const event of events) {
        emit(event);
        this.apply(event, state, params.threadId);
        if (state.failure) break;
      }
      await containerTask;
      if (containerError !== undefined && !state.failure && !signal.aborted) state.failure = await container.explainFailure(containerError);
    } catch (error) {
      if (!signal.aborted) {
        state.failure ??= await container.explainFailure(containerError ?? error);
      }
    } finally {
      if (signal.aborted) {
        status = deadline.aborted && !cancel.signal.aborted ? "timed_out" : "cancelled";
        const swept = await container.abort();
        state.failure = status === "timed_out"
          ? { code: "timed_out", message: `the turn did not finish within ${timeoutMs} ms and was stopped` }
          : { code: "cancelled", message: hooks.signal?.aborted && !cancel.signal.aborted ? "the client disconnected; the turn was cancelled" : "the turn was cancelled" };
        log.info("turn processes swept", { swept });
      } else if (state.failure) {
        status = "failed";
        if (container.started) await container.sweep();
      }
      signal.removeEventListener("abort", onAbort);
      await container.dispose();
      await containerTask;
    }
    const turnUsage = await this.turnUsage(record, state.threadId, state.usage);
    const result: TurnResult = { turnId, threadId: state.threadId, status, finalResponse: state.finalResponse, items: state.items, usage: state.usage, turnUsage };
    if (state.failure) result.error = state.failure;
    log.info("turn finished", { threadId: state.threadId, status, durationMs: Date.now() - started, ...(state.failure ? { error: state.failure.code } : {}) });
    record.sink.write(`turn=${turnId} thread=${state.threadId ?? "none"} event=finished status=${status}${state.failure ? ` error=${state.failure.code}` : ""}`);
    return result;
  }

  /** Codex reports usage cumulatively over a resumed thread; this turn's share is the difference. */
  private async turnUsage(record: WorkspaceRecord, threadId: string | null, usage: Usage | null): Promise<Usage | null> {
    if (usage === null || threadId === null || !isThreadId(threadId)) return usage;
    const store = new ThreadUsageStore(record.paths.threads);
    try {
      const delta = usageDelta(usage, await store.read(threadId));
      await store.write(threadId, usage);
      return delta;
    } catch (error) {
      this.options.log.warn("could not keep the thread's usage", { workspaceId: record.params.workspaceId, threadId, error: errorMessage(error) });
      return usage;
    }
  }

  private createThread(params: RunTurnParams, record: WorkspaceRecord, bridgeEnv: Record<string, string>) {
    const sessionEnv = containerEnv(record.params, this.options);
    const sessionEnvNames = [...Object.keys(sessionEnv), ...(this.options.aliveMcpToken ? ["ALIVE_MCP_TOKEN"] : [])];
    const codex = new Codex({
      codexPathOverride: this.options.bridgeScript,
      env: { PATH: "/usr/bin:/bin", ...bridgeEnv },
      config: buildCodexConfig({ openaiBaseUrl: this.options.openaiBaseUrl, sessionEnvNames, ...(params.mcpServers ? { mcpServers: params.mcpServers } : {}) }),
    });
    const o = params.options ?? {};
    const model = o.model ?? this.options.defaultModel ?? undefined;
    const threadOptions: ThreadOptions = {
      sandboxMode: o.sandboxMode ?? "danger-full-access",
      approvalPolicy: o.approvalPolicy ?? "never",
      skipGitRepoCheck: true,
      workingDirectory: record.params.workspacePath,
      ...(model ? { model } : {}),
      ...(o.modelReasoningEffort ? { modelReasoningEffort: o.modelReasoningEffort } : {}),
      ...(o.networkAccessEnabled !== undefined ? { networkAccessEnabled: o.networkAccessEnabled } : {}),
      ...(o.additionalDirectories ? { additionalDirectories: o.additionalDirectories } : {}),
      ...(o.webSearchMode ? { webSearchMode: o.webSearchMode } : {}),
    };
    return params.threadId ? codex.resumeThread(params.threadId, threadOptions) : codex.startThread(threadOptions);
  }

  private apply(event: ThreadEvent, state: { threadId: string | null; items: ThreadItem[]; finalResponse: string; usage: Usage | null; failure: { code: string; message: string } | null }, requestedThread: string | undefined): void {
    switch (event.type) {
      case "thread.started":
        if (requestedThread !== undefined && event.thread_id !== requestedThread) {
          state.failure = { code: "thread_mismatch", message: `codex started thread ${event.thread_id} instead of resuming ${requestedThread}` };
        }
        state.threadId = event.thread_id;
        break;
      case "item.completed":
        state.items.push(event.item);
        if (event.item.type === "agent_message") state.finalResponse = event.item.text;
        break;
      case "turn.completed":
        state.usage = event.usage;
        break;
      case "turn.failed":
        state.failure = { code: "model_error", message: event.error.message };
        break;
      default:
        break;
    }
  }
}

function launchTarget(record: WorkspaceRecord): LaunchTarget {
  const { workspaceId, uid, gid, workspacePath } = record.params;
  return { workspaceId, containerId: record.containerId, user: `${uid}:${gid}`, workingDir: workspacePath };
}

/** The container half of one turn: the bridge, the exec of codex, the sweep. */
class ContainerSide {
  private bridge: ExecBridge | null = null;
  private turnTmp: { host: string; container: string } | null = null;
  private stderrTail = "";
  private exitCode: number | null | undefined;
  private aborting: Promise<number> | null = null;
  private execStdout: Readable | null = null;
  started = false;

  constructor(
    private readonly options: TurnRunnerOptions,
    private readonly record: WorkspaceRecord,
    private readonly turnId: string,
    private readonly log: Logger,
  ) {}

  get bridgeEnv(): Record<string, string> {
    if (!this.bridge) throw new Error("bridge not prepared");
    return this.bridge.env;
  }

  async prepare(): Promise<void> {
    await fs.mkdir(this.options.bridgesDir, { recursive: true, mode: 0o700 });
    this.bridge = await ExecBridge.create(path.join(this.options.bridgesDir, `${this.turnId}-${randomBytes(4).toString("hex")}`));
  }

  /** Waits for the SDK's argv and prompt, runs codex in the container, relays its stdio to the bridge. */
  async run(signal: AbortSignal): Promise<void> {
    const bridge = this.bridge;
    if (!bridge) throw new Error("bridge not prepared");
    try {
      await this.runCodex(bridge, signal);
    } catch (error) {
      // Let the bridge script exit, so the SDK's stream ends instead of waiting for output.
      await bridge.finish(255).catch(() => undefined);
      throw error;
    }
  }

  private async runCodex(bridge: ExecBridge, signal: AbortSignal): Promise<void> {
    const request = await bridge.received();
    if (signal.aborted) return;
    const argv = await this.relocateHostFiles(request.argv);
    const env = buildCodexExecEnv({ turnId: this.turnId, codexApiKey: this.options.codexApiKey, aliveMcpToken: this.options.aliveMcpToken });
    const exec = await this.options.launchers.take(launchTarget(this.record));
    exec.stdin?.write(encodeLaunchHeader(env, argv));
    exec.stdin?.end(request.stdin);
    this.started = true;
    // Aborted while codex was being started: the sweep may have run before codex existed.
    if (this.aborting !== null) void this.sweep();
    this.execStdout = exec.stdout;
    exec.stdout.pipe(bridge.stdout, { end: false });
    if (this.aborting !== null) this.drainStdout();
    let partial = "";
    exec.stderr.on("data", (chunk: Buffer) => {
      if (!bridge.stderr.writableEnded) bridge.stderr.write(chunk);
      const text = partial + chunk.toString("utf8");
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) if (line.trim() !== "") this.record.sink.write(`turn=${this.turnId} codex: ${line}`);
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL);
    });
    const code = await exec.exit;
    if (!exec.stdout.readableEnded) await once(exec.stdout, "end").catch(() => undefined);
    if (partial.trim() !== "") this.record.sink.write(`turn=${this.turnId} codex: ${partial}`);
    this.exitCode = code;
    await bridge.finish(code ?? 255);
  }

  /** Host files the SDK wrote (the output schema) are copied where codex in the container can read them. */
  private async relocateHostFiles(argv: string[]): Promise<string[]> {
    const out = [...argv];
    const index = out.indexOf("--output-schema");
    if (index >= 0 && out[index + 1] !== undefined) {
      const name = `.alive-turn-${this.turnId}-${randomBytes(4).toString("hex")}`;
      const host = path.join(this.record.paths.tmp, name);
      await fs.mkdir(host, { mode: 0o755 });
      this.turnTmp = { host, container: path.posix.join(CONTAINER_TMPDIR, name) };
      await fs.copyFile(out[index + 1] as string, path.join(host, "schema.json"));
      await fs.chmod(path.join(host, "schema.json"), 0o644);
      out[index + 1] = path.posix.join(this.turnTmp.container, "schema.json");
    }
    return out;
  }

  /** Turns whatever ended the SDK's stream into an error a person can act on. */
  async explainFailure(error: unknown): Promise<{ code: string; message: string }> {
    const container = this.options.docker.getContainer(this.record.containerId);
    if (this.exitCode === null || (this.exitCode ?? 0) >= 128) {
      // Killed, or no exit code: the container may be going down; the engine says so a moment later.
      await container.wait({ condition: "not-running", abortSignal: AbortSignal.timeout(1000) }).catch(() => undefined);
    }
    const info = await container.inspect().catch(() => null);
    if (info === null || !info.State.Running) {
      const detail = info === null ? "was removed" : `stopped (exit code ${info.State.ExitCode}${info.State.OOMKilled ? ", killed for exceeding its memory limit" : ""})`;
      return { code: "container_died", message: `the workspace container ${detail} during the turn` };
    }
    const stderr = this.stderrTail.trim().split("\n").slice(-5).join("\n");
    if (this.exitCode !== undefined && this.exitCode !== 0) {
      return { code: "codex_exit", message: `codex exited with code ${this.exitCode ?? "unknown"}${stderr ? `: ${stderr}` : ""}` };
    }
    return { code: "codex_error", message: `${errorMessage(error)}${stderr && !errorMessage(error).includes(stderr) ? `: ${stderr}` : ""}` };
  }

  /** Sweeps the turn's processes and ends the bridge, once; resolves with how many were killed. */
  abort(): Promise<number> {
    this.aborting ??= (async () => {
      this.drainStdout();
      const swept = this.started ? await this.sweep() : 0;
      await this.bridge?.finish(130).catch(() => undefined);
      return swept;
    })();
    return this.aborting;
  }

  /** After an abort nobody reads codex's output any more: keep it flowing so the exec can end. */
  private drainStdout(): void {
    this.execStdout?.unpipe();
    this.execStdout?.resume();
  }

  /** Kills every process of this turn in the container. */
  async sweep(): Promise<number> {
    const { uid, gid } = this.record.params;
    try {
      const result = await runExec(this.options.docker, this.record.containerId, { cmd: sweepCommand(this.turnId), user: `${uid}:${gid}`, signal: AbortSignal.timeout(10_000) });
      const match = /swept (\d+)/.exec(result.stdout);
      return match ? Number(match[1]) : 0;
    } catch (error) {
      this.log.warn("could not sweep the turn's processes", { error: errorMessage(error) });
      return 0;
    }
  }

  async dispose(): Promise<void> {
    await this.bridge?.dispose().catch(() => undefined);
    if (this.turnTmp) await fs.rm(this.turnTmp.host, { recursive: true, force: true }).catch(() => undefined);
  }
}
