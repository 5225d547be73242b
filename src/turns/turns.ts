/**
 * The turns, in one place: run, attach, get, list, cancel and prewarm, and what the model proxy and
 * health ask of them (turns-port.ts). Behind it, the runner (turn-runner.ts) admits a turn and runs
 * it in its workspace's container, and the hub (turn-hub.ts) keeps every turn's events in the journal
 * as the turn.event lines the connections send (shared/turn-event-line.ts), for whoever attaches.
 */
import type { SidecarConfig } from "../config.js";
import type { AttachTurnHooks, RunTurnParams, TurnHooks, TurnInfo, TurnResult, TurnSummary } from "../service.js";
import type { ProxyRefusal } from "../model-proxy/options.js";
import type { TokenUsage } from "../model-proxy/sse-usage.js";
import type { TurnJournal, UnfinishedTurn } from "../journal/turn-journal.js";
import type { TurnRecord } from "./turn-records.js";
import { TurnHub, type TurnListFilter } from "./turn-hub.js";
import { TurnRunner, type TurnRunnerOptions } from "./turn-runner.js";
import type { TurnsPort } from "./turns-port.js";

export interface TurnsOptions extends TurnRunnerOptions {
  /** Where every turn's events and result are kept (journal/open-journal.ts opens it). */
  journal: TurnJournal;
}

/** The part of TurnsOptions the operator's configuration decides. */
export type TurnSettings = Pick<
  TurnsOptions,
  | "trustedDirs"
  | "aliveApiUrl"
  | "aliveMcpToken"
  | "nodePath"
  | "defaultModel"
  | "turnTimeoutMs"
  | "maxTurns"
  | "stallWatch"
  | "outputLineMaxBytes"
  | "modelHostedTools"
  | "budgets"
>;

/** The turns' settings from a validated config. */
export function turnSettingsFromConfig(config: SidecarConfig): TurnSettings {
  return {
    trustedDirs: config.trustedDirs,
    aliveApiUrl: config.aliveApiUrl,
    aliveMcpToken: config.aliveMcpToken,
    nodePath: config.nodePath,
    defaultModel: config.defaultModel,
    turnTimeoutMs: config.turnTimeoutMs,
    maxTurns: config.maxTurns,
    stallWatch: config.stallWatch,
    outputLineMaxBytes: config.outputLineMaxMb * 1024 * 1024,
    modelHostedTools: config.modelHostedTools,
    budgets: {
      defaultTokens: config.budgetTokens,
      maxTokens: config.budgetTokensMax,
      defaultCpuSeconds: config.budgetCpuSeconds,
      maxCpuSeconds: config.budgetCpuSecondsMax,
    },
  };
}

export class Turns implements TurnsPort {
  readonly #runner: TurnRunner;
  readonly #hub: TurnHub;

  constructor(options: TurnsOptions) {
    const { journal, ...runnerOptions } = options;
    const runner = new TurnRunner(runnerOptions);
    this.#runner = runner;
    const records = options.records;
    this.#hub = new TurnHub({
      journal,
      log: options.log,
      run: (params, hooks) => runner.run(params, hooks),
      // A turn's record goes once its end is in the journal: a sidecar killed in between finds the end.
      ...(records ? { onEnded: (turnId: string) => records.remove(turnId) } : {}),
    });
  }

  get running(): number {
    return this.#runner.running;
  }

  /** Running turns nobody is connected to: their turn.run client left and nobody attached. */
  get detached(): number {
    return this.#hub.detached;
  }

  activeTurnIds(): string[] {
    return this.#runner.activeTurnIds();
  }

  /** turn.run: admitted and run by the runner, journaled by the hub; with onDisconnect "continue" it outlives its client. */
  run(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult> {
    return this.#hub.run(params, hooks);
  }

  /** Goes on with a turn an earlier sidecar left running (turn-adoption.ts); resolves with its result. */
  adopt(turn: UnfinishedTurn, record: TurnRecord): Promise<TurnResult> {
    return this.#hub.adopt(turn, (hooks) => this.#runner.adopt({ record, lastSeq: turn.lastSeq }, hooks));
  }

  /**
   * The sidecar stops and leaves its turns running for the next one (ALIVE_CODEX_ON_STOP=leave):
   * their journals are flushed, and nothing of them is ended. Returns how many were left.
   */
  leaveRunning(withinMs: number): Promise<number> {
    return this.#runner.abandonAll(withinMs);
  }

  /** turn.attach: the turn's events after `afterSeq` (journal, then live), then its result. */
  attach(params: { turnId: string; afterSeq?: number }, hooks: AttachTurnHooks): Promise<TurnResult> {
    return this.#hub.attachTurn(params, hooks);
  }

  get(turnId: string): Promise<TurnInfo> {
    return this.#hub.get(turnId);
  }

  list(filter: TurnListFilter = {}): TurnSummary[] {
    return this.#hub.list(filter);
  }

  /** Cancels a running turn and waits a bounded while for it to settle. */
  cancel(turnId: string): Promise<boolean> {
    return this.#runner.cancel(turnId);
  }

  /** Starts the workspace's launcher for its next turn, if it is idle and running. */
  prewarm(workspaceId: string): void {
    this.#runner.prewarm(workspaceId);
  }

  /** Forgets the workspace's waiting launcher, before its container is removed. */
  discardLauncher(workspaceId: string): void {
    this.#runner.discardLauncher(workspaceId);
  }

  fail(turnId: string, code: string, message: string): void {
    this.#runner.fail(turnId, code, message);
  }

  recordModelUsage(turnId: string, usage: TokenUsage): boolean {
    return this.#runner.recordModelUsage(turnId, usage);
  }

  admitModelRequest(turnId: string): ProxyRefusal | null {
    return this.#runner.admitModelRequest(turnId);
  }

  /** Lets running turns finish within graceMs, then cancels the rest and waits for them. */
  shutdown(graceMs: number): Promise<void> {
    return this.#runner.shutdown(graceMs);
  }
}
