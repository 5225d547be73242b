/**
 * Section 6, metrics and accounting overhead: the work the sidecar adds to every turn to account for
 * it, hold it to its budget and report it, timed in-process against a real workspace container's cgroup: the turn meter's start
 * (locate the cgroup, read the CPU baseline, reset or read the memory peak, arm the poll), one model
 * response's usage and the budget's admit check, its finish (one last sample, the peak), then the
 * metric updates of a finished turn (a model request, tokens by kind, the turn's counters and
 * histograms). The cgroup poll every 250 ms runs beside the turn, not in its path, and is not counted.
 */
import { TurnMeter } from "../src/turns/turn-meter.js";
import { SidecarMetrics } from "../src/metrics/sidecar-metrics.js";
import type { WorkspaceParams } from "../src/service.js";
import type { BenchEnv } from "./harness.js";
import { LATENCY_COLUMNS, latencyRow, ms, verdict, type SectionResult } from "./report.js";
import { formatTable, summarize, timeIt } from "./stats.js";

export interface AccountingOverheadOptions {
  n: number;
  warmup: number;
}

const USAGE = { inputTokens: 1200, cachedTokens: 800, outputTokens: 60, reasoningTokens: 20, totalTokens: 1260 };

export async function benchAccountingOverhead(
  env: BenchEnv,
  params: WorkspaceParams,
  options: AccountingOverheadOptions,
): Promise<SectionResult> {
  const { containerId } = await env.sidecar.service.ensureWorkspace(params);
  const metrics = new SidecarMetrics({ workspaceStates: () => ["running"], runningTurns: () => 1 });
  let cpuSeen = false;
  const samples = await timeIt(
    async () => {
      const meter = new TurnMeter({
        containerId,
        budget: { tokens: 1_000_000, cpuSeconds: 3600 },
        onExceeded: () => undefined,
      });
      await meter.start();
      if (meter.admit() !== null) throw new Error("the meter refused a request under its budget");
      meter.addUsage(USAGE);
      const resources = await meter.finish();
      if (resources.cpuSeconds !== null) cpuSeen = true;
      metrics.countModelRequest();
      metrics.countTokens(USAGE);
      metrics.observeTurn({
        status: "completed",
        errorCode: null,
        durationMs: resources.wallMs + 1500,
        firstEventMs: 300,
        resources,
      });
    },
    { n: options.n, warmup: options.warmup },
  );
  if (!cpuSeen)
    throw new Error(`no cgroup found for container ${containerId.slice(0, 12)}: the meter measured nothing`);
  const s = summarize(samples);
  const pass = s.p50 <= 2;
  return {
    title: "6. Metrics and accounting overhead on turn latency",
    tables: [
      formatTable(
        [
          latencyRow("meter start/finish + metric updates, per turn", samples, undefined, {
            target: "p50 <= 2 ms",
            result: verdict(pass),
          }),
        ],
        LATENCY_COLUMNS,
        { decimals: 3 },
      ),
    ],
    checks: [{ metric: "metrics and accounting overhead p50", measured: ms(s.p50), target: "<= 2 ms", pass }],
    notes: [
      "in-process, against the warm workspace container's real cgroup files; one model response's usage per turn",
      "the 250 ms cgroup poll runs beside a turn, off its path, and is not counted",
    ],
  };
}
