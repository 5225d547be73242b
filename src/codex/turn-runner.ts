/**
 * Runs codex turns inside workspace containers through @openai/codex-sdk.
 *
 * The SDK spawns the exec bridge script (bridge.ts); the runner runs the real codex in the
 * container with the engine's exec API and relays its stdio. Events reach the caller as codex
 * emits them. Every turn has a deadline; an aborted turn's processes are swept from the container
 * (sweep.ts). A failed turn is a result, not an exception.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { Codex, type ThreadEvent, type ThreadItem, type ThreadOptions, type Usage } from "@openai/codex-sdk";
import type Docker from "dockerode";
import { ErrorCode, SidecarError, errorMessage, invalidParams } from "../errors.js";
import type { Logger } from "../log.js";
import { runExec } from "../docker/exec.js";
import type { RunTurnParams, TurnHooks, TurnResult, TurnStatus } from "../service.js";
import type { WorkspaceManager } from "../workspace/manager.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { isInside } from "../workspace/policy.js";
import { containerEnv } from "../workspace/spec.js";
import { buildCodexConfig } from "./config-overrides.js";
import type { Launchers } from "./launcher.js";
import { TurnContainer, launchTarget } from "./turn-container.js";
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
    const container = new TurnContainer(this.options, record, turnId, log);
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

