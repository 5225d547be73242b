/**
 * Section 3, turn overhead: one scripted two-request turn (request 1 → `exec_command` of `echo hi`,
 * request 2 → a final message), run alternately
 * (a) through the sidecar in a warm workspace (service.runTurn: SDK → exec bridge → engine exec →
 *     codex in the container), and
 * (b) by codex on the host through the SDK (the baseline),
 * (c) through the sidecar in a workspace with resources.cpus 2, and
 * (d) through the sidecar in a 1-CPU workspace whose CFS period the bench widens to 1 s (quota 1 s),
 * both against the same Responses stub on the bench bridge's gateway. Each turn starts a new thread.
 * The stub's request timestamps split every turn into phases.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { ThreadItem } from "@openai/codex-sdk";
import { runExec } from "../src/docker/exec.js";
import type { WorkspaceParams } from "../src/service.js";
import type { BenchEnv } from "./harness.js";
import { createHostCodex } from "./host-codex.js";
import { LATENCY_COLUMNS, latencyRow, ms, times, verdict, type SectionResult } from "./report.js";
import { formatTable, ratio, summarize } from "./stats.js";

export interface TurnOverheadOptions {
  n: number;
  warmup: number;
}

interface TurnTiming {
  total: number;
  /** Call → codex's thread.started event reached the caller: codex process up (sidecar: + bridge + engine exec). */
  toThreadStarted: number;
  /** thread.started → request 1 arrived at the stub: codex's own start-up work before it asks the model. */
  toFirstRequest: number;
  /** Request 1 → request 2: streaming the call, running `echo hi`, posting its output. */
  commandRoundTrip: number;
  /** Request 2 → the turn's result: the final message, codex exiting, teardown. */
  toResult: number;
}

const PROMPT = "Run echo hi, then say done.";

function checkItems(arm: string, items: ThreadItem[], finalResponse: string): void {
  const command = items.find((item) => item.type === "command_execution");
  if (command?.type !== "command_execution" || command.exit_code !== 0 || !command.aggregated_output.includes("hi")) {
    throw new Error(`${arm}: the turn did not run echo hi (items: ${items.map((item) => item.type).join(", ")})`);
  }
  if (finalResponse !== "done")
    throw new Error(`${arm}: final response ${JSON.stringify(finalResponse)}, expected "done"`);
}

export async function benchTurnOverhead(
  env: BenchEnv,
  params: WorkspaceParams,
  options: TurnOverheadOptions,
): Promise<SectionResult> {
  const { stub } = env;
  const { service } = env.sidecar;
  await service.ensureWorkspace(params);
  const host = await createHostCodex(env.root, stub.baseUrl);

  /** `run` calls `threadStarted()` when codex's thread.started event arrives. */
  const timed = async (arm: string, run: (threadStarted: () => void) => Promise<void>): Promise<TurnTiming> => {
    // Untimed: restarts the container if something stopped it (a parallel test sidecar's idle reaper adopts every managed container).
    await service.ensureWorkspace(params);
    stub.reset();
    stub.script({ kind: "command", cmd: "echo hi" }, { kind: "message", text: "done" });
    let threadStartedAt = NaN;
    const start = performance.now();
    await run(() => {
      threadStartedAt = performance.now();
    });
    const end = performance.now();
    const [first, second] = stub.requests;
    if (stub.requests.length !== 2 || first === undefined || second === undefined || stub.pending !== 0) {
      throw new Error(
        `${arm}: expected 2 model requests, the stub saw ${stub.requests.length} (${stub.pending} step(s) left)`,
      );
    }
    return {
      total: end - start,
      toThreadStarted: threadStartedAt - start,
      toFirstRequest: first.receivedAt - threadStartedAt,
      commandRoundTrip: second.receivedAt - first.receivedAt,
      toResult: end - second.receivedAt,
    };
  };

  // The same turn in a workspace allowed 2 CPUs (NanoCpus 2e9: all of this machine) instead of the default 1.
  const wide = { ...(await env.workspace(env.uniqueId("bench-turn-cpus2"))), resources: { cpus: 2 } };
  await service.ensureWorkspace(wide);
  // The default 1 CPU as a longer CFS window: quota 1 s per 1 s period (same average bound) lets a
  // start-up burst use both cores. Written to the container's cgroup (v1) directly, for the bench only.
  const burst = await env.workspace(env.uniqueId("bench-turn-period1s"));
  const burstId = (await service.ensureWorkspace(burst)).containerId;
  const cpuDir = (id: string): string => `/sys/fs/cgroup/cpu/docker/${id}`;
  await fs.writeFile(path.join(cpuDir(burstId), "cpu.cfs_period_us"), "1000000");
  await fs.writeFile(path.join(cpuDir(burstId), "cpu.cfs_quota_us"), "1000000");
  const defaultId = (await service.ensureWorkspace(params)).containerId;
  const cpuStat = async (id: string): Promise<{ throttled: number; throttledMs: number }> => {
    const text = await fs.readFile(path.join(cpuDir(id), "cpu.stat"), "utf8").catch(() => "");
    const field = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? NaN);
    return { throttled: field("nr_throttled"), throttledMs: field("throttled_time") / 1e6 };
  };

  const sidecarTurn = (arm: string, target: WorkspaceParams) => (): Promise<TurnTiming> =>
    timed(arm, async (threadStarted) => {
      await service.ensureWorkspace(target);
      const result = await service.runTurn(
        { workspaceId: target.workspaceId, input: PROMPT },
        {
          onEvent: (_turnId, _seq, event) => {
            if (event.type === "thread.started") threadStarted();
          },
        },
      );
      if (result.status !== "completed")
        throw new Error(`${arm}: turn ${result.status}: ${result.error?.message ?? ""}`);
      checkItems(arm, result.items, result.finalResponse);
    });
  const runSidecar = sidecarTurn("sidecar", params);
  const runWide = sidecarTurn("sidecar cpus=2", wide);
  const runBurst = sidecarTurn("sidecar 1 CPU per 1 s period", burst);
  const runHost = (): Promise<TurnTiming> =>
    timed("host", async (threadStarted) => {
      // What Thread.run() does, with the event stream visible.
      const { events } = await host.startThread().runStreamed(PROMPT);
      const items: ThreadItem[] = [];
      let finalResponse = "";
      for await (const event of events) {
        if (event.type === "thread.started") threadStarted();
        if (event.type === "turn.failed") throw new Error(`host: turn failed: ${event.error.message}`);
        if (event.type === "item.completed") {
          items.push(event.item);
          if (event.item.type === "agent_message") finalResponse = event.item.text;
        }
      }
      checkItems("host", items, finalResponse);
    });

  const sidecarTimings: TurnTiming[] = [];
  const hostTimings: TurnTiming[] = [];
  const wideTimings: TurnTiming[] = [];
  const burstTimings: TurnTiming[] = [];
  const arms: Array<[() => Promise<TurnTiming>, TurnTiming[]]> = [
    [runSidecar, sidecarTimings],
    [runHost, hostTimings],
    [runWide, wideTimings],
    [runBurst, burstTimings],
  ];
  const throttleBefore = { default: await cpuStat(defaultId), burst: await cpuStat(burstId) };
  const throttling = { default: "-", burst: "-" };
  let homeWrites: { sidecar: string[]; host: string[] } = { sidecar: [], host: [] };
  try {
    for (let i = -options.warmup; i < options.n; i++) {
      // Rotate which arm goes first, so none always runs right after another.
      const offset = ((i % arms.length) + arms.length) % arms.length;
      for (const [run, into] of [...arms.slice(offset), ...arms.slice(0, offset)]) {
        const timing = await run();
        if (i >= 0) into.push(timing);
      }
    }
    const throttleAfter = { default: await cpuStat(defaultId), burst: await cpuStat(burstId) };
    const turns = options.n + options.warmup;
    for (const arm of ["default", "burst"] as const) {
      throttling[arm] =
        `${((throttleAfter[arm].throttled - throttleBefore[arm].throttled) / turns).toFixed(1)} throttled periods, ${((throttleAfter[arm].throttledMs - throttleBefore[arm].throttledMs) / turns).toFixed(1)} ms throttled per turn`;
    }
    // Untimed: which files in HOME one more turn creates or modifies (sidecar: the workspace's HOME bind mount).
    homeWrites = {
      sidecar: await filesWritten(env.sidecar.workspaces.paths(params.workspaceId).home, () => runSidecar()),
      host: await filesWritten(host.home, () => runHost()),
    };
  } finally {
    stub.reset();
    await host.dispose();
    await service.removeWorkspace({ workspaceId: wide.workspaceId, purgeHome: true }).catch(() => undefined);
    await service.removeWorkspace({ workspaceId: burst.workspaceId, purgeHome: true }).catch(() => undefined);
  }

  // For scale: one engine exec round trip in the workspace (what the sidecar adds per process it runs).
  const { containerId } = await service.ensureWorkspace(params);
  const execSamples: number[] = [];
  for (let i = -2; i < 20; i++) {
    const start = performance.now();
    await runExec(env.docker, containerId, { cmd: ["true"], user: `${params.uid}:${params.gid}` });
    if (i >= 0) execSamples.push(performance.now() - start);
  }

  const sidecarTotal = sidecarTimings.map((t) => t.total);
  const hostTotal = hostTimings.map((t) => t.total);
  const s = summarize(sidecarTotal);
  const h = summarize(hostTotal);
  const overhead = s.p50 - h.p50;
  const r = ratio(s.p50, h.p50);
  const pass = overhead <= 50 && r <= 1.1;
  const phase = (timings: TurnTiming[], key: keyof TurnTiming): number => summarize(timings.map((t) => t[key])).p50;
  const w = summarize(wideTimings.map((t) => t.total));
  const b = summarize(burstTimings.map((t) => t.total));
  const phaseRows = (["toThreadStarted", "toFirstRequest", "commandRoundTrip", "toResult", "total"] as const).map(
    (key) => ({
      phase: {
        toThreadStarted: "call -> thread.started (codex process up)",
        toFirstRequest: "thread.started -> model request 1",
        commandRoundTrip: "request 1 -> request 2 (echo hi)",
        toResult: "request 2 -> result (final message, exit)",
        total: "total",
      }[key],
      "sidecar p50 ms": phase(sidecarTimings, key),
      "host p50 ms": phase(hostTimings, key),
      "delta ms": phase(sidecarTimings, key) - phase(hostTimings, key),
      "cpus=2 p50 ms": phase(wideTimings, key),
      "cpus=2 delta ms": phase(wideTimings, key) - phase(hostTimings, key),
      "1s-period p50 ms": phase(burstTimings, key),
      "1s-period delta ms": phase(burstTimings, key) - phase(hostTimings, key),
    }),
  );

  return {
    title: "3. Turn overhead (two-request turn: echo hi, then a message)",
    tables: [
      formatTable(
        [
          latencyRow("sidecar runTurn (warm workspace)", sidecarTotal, h, {
            target: "<= +50 ms and <= 1.10x p50",
            result: verdict(pass),
          }),
          latencyRow("codex SDK on the host (baseline)", hostTotal, h, { target: "-", result: "-" }),
          latencyRow(
            "sidecar runTurn, workspace with cpus=2",
            wideTimings.map((t) => t.total),
            h,
            { target: "-", result: "-" },
          ),
          latencyRow(
            "sidecar runTurn, 1 CPU as 1 s quota / 1 s period",
            burstTimings.map((t) => t.total),
            h,
            { target: "-", result: "-" },
          ),
        ],
        LATENCY_COLUMNS,
      ),
      "Per phase (p50 of each phase, from the stub's request timestamps):\n" + formatTable(phaseRows),
    ],
    checks: [
      {
        metric: "turn overhead: sidecar p50 - host p50",
        measured: `${overhead >= 0 ? "+" : ""}${ms(overhead)}`,
        target: "<= +50 ms",
        pass: overhead <= 50,
      },
      { metric: "turn overhead: sidecar p50 / host p50", measured: times(r), target: "<= 1.10x", pass: r <= 1.1 },
    ],
    notes: [
      `overhead p50 = ${ms(overhead)}; arms interleaved (order rotating), ${options.warmup} warm-up turn(s) per arm discarded; every turn is checked (echo hi exit 0, final "done", exactly 2 model requests)`,
      `cpus=2 (NanoCpus 2e9, this machine's 2 cores) vs the default 1: overhead p50 ${ms(w.p50 - h.p50)} (${times(ratio(w.p50, h.p50))}) vs ${ms(overhead)}`,
      `1 CPU as quota 1 s per 1 s CFS period (cgroup written by the bench; default is 100 ms / 100 ms): overhead p50 ${ms(b.p50 - h.p50)} (${times(ratio(b.p50, h.p50))})`,
      `CFS throttling per turn (cpu.stat): default 1 CPU: ${throttling.default}; 1 s period: ${throttling.burst}`,
      `files one turn creates or modifies in HOME: sidecar ${homeWrites.sidecar.length} (${homeWrites.sidecar.join(", ") || "none"}); host ${homeWrites.host.length} (${homeWrites.host.join(", ") || "none"})`,
      `for scale: one engine exec of \`true\` in the workspace container (create + start + attach + inspect) takes p50 ${ms(summarize(execSamples).p50)}`,
      "both arms use the same codex binary and the same --config overrides (buildCodexConfig); the stub listens on the bench bridge's gateway for both",
      "the host arm runs codex as root with no container limits; the sidecar arm runs it as uid 10001 under the workspace limits (1 CPU)",
    ],
  };
}

/** Relative paths of the files under `dir` that `run` created or whose mtime it changed. */
async function filesWritten(dir: string, run: () => Promise<unknown>): Promise<string[]> {
  const snapshot = async (): Promise<Map<string, number>> => {
    const seen = new Map<string, number>();
    const walk = async (at: string): Promise<void> => {
      for (const entry of await fs.readdir(at, { withFileTypes: true }).catch(() => [])) {
        const full = path.join(at, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.isFile()) seen.set(path.relative(dir, full), (await fs.stat(full)).mtimeMs);
      }
    };
    await walk(dir);
    return seen;
  };
  const before = await snapshot();
  await run();
  const after = await snapshot();
  return [...after]
    .filter(([file, mtime]) => before.get(file) !== mtime)
    .map(([file]) => file.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<uuid>"))
    .sort();
}
