/**
 * Runs codex turns inside workspace containers through @openai/codex-sdk: admits them
 * (turn-admission.ts, codex/sandbox-probe.ts), runs them (turn-execution.ts) one per workspace and
 * within the turn limit, cancels them, and lets them finish on shutdown.
 */
import { randomUUID } from "node:crypto";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { RunTurnParams, TurnHooks, TurnResult } from "../service.js";
import { SandboxProbe } from "../codex/sandbox-probe.js";
import { checkAdditionalDirectories, checkInput, checkThread, checkTurnSlot } from "./turn-admission.js";
import { launchTarget } from "./turn-container.js";
import { TurnFailure, executeTurn } from "./turn-execution.js";
import { TurnRecordKeeper, adoptedContinuity, type AdoptedTurn, type TurnContinuity } from "./turn-continuity.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import type { TurnBudget } from "./turn-budget.js";
import { SANDBOX_STALLED } from "./turn-stall-watch.js";
import { codexWebSearchMode } from "../model-proxy/body-policy.js";
import type { ProxyRefusal } from "../model-proxy/options.js";
import { egressInForce } from "../workspace/record.js";
import type { TokenUsage } from "../model-proxy/sse-usage.js";
import { resolveTurnBudget } from "./turn-budget.js";
import { turnEgress } from "./turn-egress.js";
import type { TurnRunnerOptions } from "./runner-options.js";
import { TurnMeter } from "./turn-meter.js";

export type { TurnRunnerOptions } from "./runner-options.js";

interface RunningTurn {
  turnId: string;
  workspaceId: string;
  cancel: AbortController;
  /** Aborted when the sidecar stops and leaves the turn running. */
  abandon: AbortController;
  meter: TurnMeter;
  done: Promise<unknown>;
}

/** How long turn.cancel waits for the turn to settle before answering anyway. */
const CANCEL_SETTLE_MS = 10_000;

export class TurnRunner {
  private readonly turns = new Map<string, RunningTurn>();
  private readonly sandbox: SandboxProbe;
  private closing = false;

  constructor(private readonly options: TurnRunnerOptions) {
    this.sandbox = new SandboxProbe(options.engine);
  }

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
    await Promise.race([
      turn.done.catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, CANCEL_SETTLE_MS))),
    ]);
    clearTimeout(timer);
    return true;
  }

  /**
   * Fails a running turn from outside its event stream (the model proxy found the model API
   * unreachable, a budget was crossed): it stops at once, its processes are swept, and its result says why.
   */
  fail(turnId: string, code: string, message: string): void {
    const turn = this.turns.get(turnId);
    if (turn && !turn.cancel.signal.aborted) turn.cancel.abort(new TurnFailure(code, message));
  }

  /** The model proxy read a response's usage for the turn: counted, and checked against its token budget. False when the turn has ended. */
  recordModelUsage(turnId: string, usage: TokenUsage): boolean {
    const turn = this.turns.get(turnId);
    turn?.meter.addUsage(usage);
    return turn !== undefined;
  }

  /** The model proxy asks before forwarding a request: refused once the turn's token budget is spent. */
  admitModelRequest(turnId: string): ProxyRefusal | null {
    return this.turns.get(turnId)?.meter.admit() ?? null;
  }

  /** Starts the workspace's launcher for its next turn, if it is idle and running. */
  prewarm(workspaceId: string): void {
    const record = this.options.workspaces.find(workspaceId);
    if (!this.closing && record && record.state === "running" && record.activeTurnId === null)
      this.options.launchers.prewarm(launchTarget(record));
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
    const turnId = params.turnId ?? randomUUID();
    checkTurnSlot(this.turns, turnId, this.options.maxTurns);
    workspaces.assertIdle(params.workspaceId);
    checkInput(params, target!.workspacePath);
    checkAdditionalDirectories(params, target!.workspacePath, this.options.trustedDirs);
    const budget = resolveTurnBudget(params.options?.budget, this.options.budgets);
    if (params.threadId !== undefined)
      await checkThread(params.threadId, params.workspaceId, workspaces.paths(params.workspaceId).codexHome);
    if (params.workspace) await workspaces.ensure(params.workspace, hooks.signal);
    let record = workspaces.get(params.workspaceId);
    if (record.state !== "running") {
      await workspaces.ensure(record.params, hooks.signal);
      record = workspaces.get(params.workspaceId);
    }
    // read-only needs codex's own sandbox (bubblewrap), which the hardened container refuses: the
    // probe says so. workspace-write is the container's own promise: codex runs unsandboxed in it,
    // and without network access the turn's egress narrows to the model API.
    const sandboxMode = params.options?.sandboxMode ?? "danger-full-access";
    if (sandboxMode === "read-only") await this.sandbox.check(sandboxMode, record);
    // A binding never widens the egress: checked against what the turn will have in force.
    if (params.secrets) this.options.turnSecrets?.check(params.secrets, turnEgress(params.options) ?? record.egress);
    checkTurnSlot(this.turns, turnId, this.options.maxTurns);
    workspaces.acquireTurn(params.workspaceId, turnId);
    try {
      // Held by the turn, the workspace is never paused or stopped; one the idle reaper began to
      // pause or stop before is waited for and brought back here.
      await workspaces.ready(params.workspaceId, hooks.signal);
      checkTurnSlot(this.turns, turnId, this.options.maxTurns);
    } catch (error) {
      workspaces.releaseTurn(params.workspaceId, turnId);
      throw error;
    }
    record.turnEgress = turnEgress(params.options);
    if (params.secrets) this.options.turnSecrets?.set(params.workspaceId, params.secrets);
    // Codex is told no web search where the model proxy would refuse its tool (codex 0.163 offers
    // live web search by default), so an honest turn never trips the body policy.
    const webSearchMode = codexWebSearchMode(
      egressInForce(record),
      params.options?.webSearchMode,
      new Set(this.options.modelHostedTools ?? []),
    );
    const turnParams =
      webSearchMode === params.options?.webSearchMode
        ? params
        : { ...params, options: { ...params.options, webSearchMode } };
    return this.#execute(turnId, turnParams, record, hooks, budget, null);
  }

  /**
   * Adopts a turn an earlier sidecar left running (turn-adoption.ts): its workspace is held, its
   * credential accepted again, and its codex followed to its end, as any turn of this sidecar.
   */
  adopt(adopted: AdoptedTurn, hooks: TurnHooks): Promise<TurnResult> {
    const { record: saved } = adopted;
    const { workspaces } = this.options;
    checkTurnSlot(this.turns, saved.turnId, Number.MAX_SAFE_INTEGER);
    const record = workspaces.acquireTurn(saved.workspaceId, saved.turnId);
    const params: RunTurnParams = {
      workspaceId: saved.workspaceId,
      turnId: saved.turnId,
      ...(saved.threadId ? { threadId: saved.threadId } : {}),
      input: "",
      options: { timeoutMs: saved.timeoutMs },
    };
    return this.#execute(saved.turnId, params, record, hooks, saved.budget, adopted);
  }

  /**
   * The sidecar stops and leaves its turns running for the next one: each turn's bridge ends and
   * nothing of the turn is ended, swept or revoked. Resolves once every turn has let go (a bounded while).
   */
  async abandonAll(withinMs: number): Promise<number> {
    this.closing = true;
    const pending = [...this.turns.values()];
    for (const turn of pending) turn.abandon.abort();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(pending.map((t) => t.done)),
      new Promise((resolve) => (timer = setTimeout(resolve, withinMs))),
    ]);
    clearTimeout(timer);
    this.options.launchers.close();
    return pending.length;
  }

  #execute(
    turnId: string,
    params: RunTurnParams,
    record: WorkspaceRecord,
    hooks: TurnHooks,
    budget: TurnBudget,
    adopted: AdoptedTurn | null,
  ): Promise<TurnResult> {
    const { workspaces } = this.options;
    const cancel = new AbortController();
    const abandon = new AbortController();
    const records = this.options.records;
    const timeoutMs = params.options?.timeoutMs ?? this.options.turnTimeoutMs;
    const keeper = new TurnRecordKeeper(records, adopted?.record ?? null, {
      sidecarVersion: this.options.sidecarVersion,
      turnId,
      workspaceId: params.workspaceId,
      containerId: record.containerId,
      threadId: params.threadId ?? null,
      timeoutMs,
      budget,
    });
    const meter: TurnMeter = new TurnMeter({
      containerId: record.containerId,
      budget,
      onExceeded: (message) => this.fail(turnId, "budget_exceeded", message),
      ...(this.options.cgroupRoot ? { cgroupRoot: this.options.cgroupRoot } : {}),
      // The tokens counted so far survive a restart with the turn's record.
      onUsage: () => keeper.usage(meter.carryOver()),
    });
    const continuity: TurnContinuity = {
      abandon: abandon.signal,
      onLaunched: (launch, digest) => keeper.launched(launch, digest, meter.carryOver()),
      ...(adopted ? { adopted: adoptedContinuity(adopted.record, adopted.lastSeq) } : {}),
    };
    const done = executeTurn(this.options, turnId, params, record, hooks, cancel, meter, continuity)
      .then(async (result) => {
        // A stalled sandbox is not trusted with the next turn: stopped now, started afresh by the next ensure or turn.
        if (result.error?.code === SANDBOX_STALLED) {
          this.options.launchers.discard(params.workspaceId);
          await workspaces.recycle(params.workspaceId).catch((error: unknown) =>
            this.options.log.warn("could not restart a stalled sandbox", {
              workspaceId: params.workspaceId,
              error: errorMessage(error),
            }),
          );
        }
        return result;
      })
      .finally(() => {
        this.turns.delete(turnId);
        if (params.secrets) this.options.turnSecrets?.set(params.workspaceId, null);
        record.turnEgress = null;
        workspaces.releaseTurn(params.workspaceId, turnId);
        this.prewarm(params.workspaceId);
      });
    this.turns.set(turnId, { turnId, workspaceId: params.workspaceId, cancel, abandon, meter, done });
    return done;
  }
}
