/**
 * One turn's accounting and budget: the workspace container's CPU time and peak memory over the
 * turn (from its cgroup, docker/cgroup-stats.ts), its wall time, and the exact tokens of its model
 * requests (the model proxy reports each response's usage). Crossing the budget calls
 * `onExceeded` once; the runner fails the turn with it.
 *
 * CPU is a delta of the cgroup's counter. Peak memory: on cgroup v1 the peak is reset at the
 * turn's start; where it cannot be (v2), the lifetime peak counts if the turn raised it, else the
 * highest usage seen by the poll.
 */
import { ContainerCgroup } from "../docker/cgroup-stats.js";
import type { ProxyRefusal } from "../model-proxy/options.js";
import type { TokenUsage } from "../model-proxy/sse-usage.js";
import type { TurnResources, TurnTokens } from "../service.js";
import type { TurnBudget } from "./turn-budget.js";

/** How often the cgroup is read while the turn runs (CPU budget, peak memory on v2). */
export const METER_POLL_MS = 250;

export interface TurnMeterOptions {
  containerId: string;
  budget: TurnBudget;
  /** Called once, when a budget is crossed, with a message saying which. */
  onExceeded: (message: string) => void;
  cgroupRoot?: string;
  pollMs?: number;
  /** Told after each response's usage is counted (the turn's record keeps the counts across a restart). */
  onUsage?: () => void;
}

/** What a meter carries over a sidecar restart (turn-records.ts). */
export interface MeterCarryOver {
  startedAt: number;
  cpuStartNs: number | null;
  tokens: TurnTokens;
  totalTokens: number;
}

export function emptyTokens(): TurnTokens {
  return { input: 0, cached: 0, output: 0, reasoning: 0 };
}

export class TurnMeter {
  readonly tokens: TurnTokens = emptyTokens();
  private totalTokens = 0;
  private exceeded = false;
  private cgroup: ContainerCgroup | null = null;
  private cpuStartNs: number | null = null;
  private cpuLastNs: number | null = null;
  private peakAtStart: number | null = null;
  private peakReset = false;
  private polledPeak = 0;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;

  constructor(private readonly options: TurnMeterOptions) {}

  get budget(): TurnBudget {
    return this.options.budget;
  }

  /** What a sidecar adopting the turn needs to go on counting. */
  carryOver(): MeterCarryOver {
    return {
      startedAt: this.startedAt,
      cpuStartNs: this.cpuStartNs,
      tokens: { ...this.tokens },
      totalTokens: this.totalTokens,
    };
  }

  /**
   * Takes the cgroup's baseline and starts polling it. With `from` (a turn adopted after a restart),
   * goes on from that turn's start and counts instead; its peak memory is then the peak seen since.
   */
  async start(from?: MeterCarryOver): Promise<void> {
    this.startedAt = from?.startedAt ?? Date.now();
    if (from) {
      Object.assign(this.tokens, from.tokens);
      this.totalTokens = from.totalTokens;
    }
    this.cgroup = await ContainerCgroup.locate(this.options.containerId, this.options.cgroupRoot);
    if (this.cgroup === null) return;
    this.cpuStartNs = from ? from.cpuStartNs : await this.cgroup.cpuNs();
    this.cpuLastNs = from ? await this.cgroup.cpuNs() : this.cpuStartNs;
    this.peakReset = from ? false : await this.cgroup.resetPeak();
    if (!this.peakReset) this.peakAtStart = await this.cgroup.peakMemory();
    this.polledPeak = (await this.cgroup.memoryNow()) ?? 0;
    this.timer = setInterval(() => {
      this.polling ??= this.sample().finally(() => (this.polling = null));
    }, this.options.pollMs ?? METER_POLL_MS);
    this.timer.unref();
  }

  /** Adds one model response's usage; a token budget crossed ends the turn. */
  addUsage(usage: TokenUsage): void {
    this.tokens.input += usage.inputTokens;
    this.tokens.cached += usage.cachedTokens;
    this.tokens.output += usage.outputTokens;
    this.tokens.reasoning += usage.reasoningTokens;
    this.totalTokens += usage.totalTokens;
    this.options.onUsage?.();
    const limit = this.options.budget.tokens;
    if (limit !== null && this.totalTokens > limit)
      this.exceed(`the turn used ${this.totalTokens} tokens, over its budget of ${limit}`);
  }

  /** Before a model request is forwarded: refused once the token budget is spent. */
  admit(): ProxyRefusal | null {
    const limit = this.options.budget.tokens;
    if (limit === null || this.totalTokens < limit) return null;
    const message = `the turn used ${this.totalTokens} tokens of its budget of ${limit}`;
    this.exceed(message);
    return { status: 429, code: "budget_exceeded", message };
  }

  /** Stops polling and returns the turn's figures. */
  async finish(): Promise<TurnResources> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.polling;
    const wallMs = Date.now() - this.startedAt;
    if (this.cgroup === null) return { cpuSeconds: null, peakMemoryBytes: null, wallMs };
    await this.sample();
    return { cpuSeconds: this.cpuSeconds(), peakMemoryBytes: await this.peakMemory(), wallMs };
  }

  private cpuSeconds(): number | null {
    if (this.cpuStartNs === null || this.cpuLastNs === null) return null;
    return Math.max(0, this.cpuLastNs - this.cpuStartNs) / 1e9;
  }

  private async peakMemory(): Promise<number | null> {
    const peak = await this.cgroup!.peakMemory();
    if (this.peakReset) return peak ?? this.polledPeak;
    if (peak !== null && this.peakAtStart !== null && peak > this.peakAtStart) return peak;
    return this.polledPeak;
  }

  private async sample(): Promise<void> {
    const cgroup = this.cgroup;
    if (cgroup === null) return;
    const [cpu, memory] = await Promise.all([
      cgroup.cpuNs(),
      this.peakReset ? Promise.resolve(null) : cgroup.memoryNow(),
    ]);
    if (cpu !== null) this.cpuLastNs = cpu;
    if (memory !== null) this.polledPeak = Math.max(this.polledPeak, memory);
    const limit = this.options.budget.cpuSeconds;
    const used = this.cpuSeconds();
    if (limit !== null && used !== null && used > limit)
      this.exceed(`the workspace used ${used.toFixed(2)} CPU seconds in the turn, over its budget of ${limit}`);
  }

  private exceed(message: string): void {
    if (this.exceeded) return;
    this.exceeded = true;
    this.options.onExceeded(message);
  }
}
