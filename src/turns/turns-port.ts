/**
 * What the parts built before the turns need from them, the one place that need is met late, and
 * the model proxy's hooks into them.
 *
 * The graph is built one way: the proxies come first (the workspaces are told about them), the
 * workspaces next, the turns last (they run in the workspaces). The model proxy and the metrics
 * still ask the turns things, so they are handed a LateTurns, which the wiring binds to the turns
 * once they exist.
 */
import type { Logger } from "../log.js";
import type { WorkspaceEndpointsOptions } from "../egress/workspace-endpoints.js";
import type { ProxyRefusal } from "../model-proxy/options.js";
import type { TokenUsage } from "../model-proxy/sse-usage.js";

/** What the model proxy asks of the turns, by the turn its credential names. */
export interface TurnsForProxies {
  /** The model API cannot be reached: the turn fails at once instead of codex retrying it to its deadline. */
  fail(turnId: string, code: string, message: string): void;
  /** A response's usage, counted against the turn's token budget; false when the turn has ended. */
  recordModelUsage(turnId: string, usage: TokenUsage): boolean;
  /** Asked before a request is forwarded: refused once the turn's token budget is spent. */
  admitModelRequest(turnId: string): ProxyRefusal | null;
}

/** How many turns run, and how many of those nobody is connected to (health and the metrics' gauges). */
export interface TurnCounts {
  readonly running: number;
  readonly detached: number;
}

export type TurnsPort = TurnsForProxies & TurnCounts;

/**
 * The turns for what is built before them: forwards to the turns it is bound to, once. Nothing
 * should reach it earlier (the model proxy calls only for a turn's credential, which only a running
 * turn has issued, and the metrics are served after the turns are built), so a call before the bind
 * is a wiring mistake and throws, naming it, rather than being dropped unseen.
 */
export class LateTurns implements TurnsPort {
  #target: TurnsPort | null = null;

  /** Binds the turns; a second bind throws (the turns are built once). */
  bind(target: TurnsPort): void {
    if (this.#target !== null) throw new Error("the turns are bound already: they are built once");
    this.#target = target;
  }

  get running(): number {
    return this.#turns("running").running;
  }

  get detached(): number {
    return this.#turns("detached").detached;
  }

  fail(turnId: string, code: string, message: string): void {
    this.#turns("fail").fail(turnId, code, message);
  }

  recordModelUsage(turnId: string, usage: TokenUsage): boolean {
    return this.#turns("recordModelUsage").recordModelUsage(turnId, usage);
  }

  admitModelRequest(turnId: string): ProxyRefusal | null {
    return this.#turns("admitModelRequest").admitModelRequest(turnId);
  }

  #turns(use: string): TurnsPort {
    if (this.#target === null)
      throw new Error(`the turns were asked for ${use} before they were built (bind them once they exist)`);
    return this.#target;
  }
}

/** What the model proxy's hooks also tell the metrics, when they are served. */
export interface ModelProxyTurnMetrics {
  countProxyError(code: string): void;
  countTokens(usage: TokenUsage): void;
  countLateTokens(total: number): void;
}

/**
 * The model proxy's hooks into the turns. A model API that cannot be reached fails the turn within
 * seconds instead of codex retrying it to its deadline. Usage is exact per turn and its token budget
 * is enforced before each model request; usage that arrives after its turn ended is logged with the
 * turn and workspace.
 */
export function modelProxyTurnHooks(
  turns: TurnsForProxies,
  log: Logger,
  metrics: ModelProxyTurnMetrics | null,
): Required<Pick<WorkspaceEndpointsOptions, "onModelUnreachable" | "onUsage" | "admit">> {
  return {
    onModelUnreachable: (ref, failure) => {
      metrics?.countProxyError(failure.code);
      turns.fail(ref.turnId, "model_unreachable", failure.message);
    },
    onUsage: (ref, usage) => {
      metrics?.countTokens(usage);
      if (turns.recordModelUsage(ref.turnId, usage)) return;
      metrics?.countLateTokens(usage.totalTokens);
      const tokens = {
        input: usage.inputTokens,
        cached: usage.cachedTokens,
        output: usage.outputTokens,
        reasoning: usage.reasoningTokens,
        total: usage.totalTokens,
      };
      log.info("model usage arrived after its turn ended", {
        workspaceId: ref.workspaceId,
        turnId: ref.turnId,
        tokens,
      });
    },
    admit: (ref) => turns.admitModelRequest(ref.turnId),
  };
}
