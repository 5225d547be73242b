/**
 * Section "runtimes": runc and gVisor (runsc) side by side in the same run, through the sidecar.
 * - cold ensure: service.ensureWorkspace of a fresh workspace with `runtime` "runc" and "runsc",
 *   interleaved (order alternating); untimed after each sample, `true` is exec'd (exec-ready) and
 *   the workspace removed;
 * - warm turn: the same scripted two-request turn as section 3 (`echo hi`, then "done") in a warm
 *   runc workspace, a warm runsc workspace and codex on the host (the baseline), interleaved;
 *   overhead = sidecar p50 - host p50 per runtime.
 * Needs runsc registered with the engine (scripts/install-runsc.sh); without it the section fails
 * with that reason.
 */
import { performance } from "node:perf_hooks";
import type { ThreadItem } from "@openai/codex-sdk";
import { runExec } from "../src/docker/exec.js";
import type { WorkspaceParams } from "../src/service.js";
import type { BenchEnv } from "./harness.js";
import { createHostCodex } from "./host-codex.js";
import { LATENCY_COLUMNS, latencyRow, ms, times, type SectionResult } from "./report.js";
import { formatTable, ratio, summarize } from "./stats.js";

export interface RuntimesOptions {
  coldN: number;
  turnN: number;
  warmup: number;
}

const RUNTIMES = ["runc", "runsc"] as const;
type Runtime = (typeof RUNTIMES)[number];
const PROMPT = "Run echo hi, then say done.";

function checkTurn(arm: string, items: ThreadItem[], finalResponse: string): void {
  const command = items.find((item) => item.type === "command_execution");
  if (command?.type !== "command_execution" || command.exit_code !== 0 || !command.aggregated_output.includes("hi")) {
    throw new Error(`${arm}: the turn did not run echo hi (items: ${items.map((item) => item.type).join(", ")})`);
  }
  if (finalResponse !== "done")
    throw new Error(`${arm}: final response ${JSON.stringify(finalResponse)}, expected "done"`);
}

export async function benchRuntimes(env: BenchEnv, options: RuntimesOptions): Promise<SectionResult> {
  const { docker, stub } = env;
  const { service } = env.sidecar;
  const engineRuntimes = Object.keys(((await docker.info()) as { Runtimes?: Record<string, unknown> }).Runtimes ?? {});
  if (!engineRuntimes.includes("runsc"))
    throw new Error(
      `the engine does not list runsc (it lists ${engineRuntimes.join(", ")}): run scripts/install-runsc.sh`,
    );

  // Cold ensure, interleaved.
  const cold: Record<Runtime, number[]> = { runc: [], runsc: [] };
  const coldOnce = async (runtime: Runtime): Promise<number> => {
    const params: WorkspaceParams = { ...(await env.workspace(env.uniqueId(`bench-rt-${runtime}`))), runtime };
    const start = performance.now();
    const result = await service.ensureWorkspace(params);
    const elapsed = performance.now() - start;
    if (!result.created) throw new Error(`${runtime}: ensure of a fresh workspace did not create a container`);
    const ready = await runExec(docker, result.containerId, { cmd: ["true"] });
    if (ready.exitCode !== 0)
      throw new Error(`${runtime}: exec of true exited ${String(ready.exitCode)}: ${ready.stderr}`);
    await service.removeWorkspace({ workspaceId: params.workspaceId, purgeHome: true });
    return elapsed;
  };
  for (let round = -options.warmup; round < options.coldN; round++) {
    const order = round % 2 === 0 ? RUNTIMES : [...RUNTIMES].reverse();
    for (const runtime of order) {
      const elapsed = await coldOnce(runtime);
      if (round >= 0) cold[runtime].push(elapsed);
    }
  }

  // Warm turns: one workspace per runtime, ensured once; the host's codex as the baseline.
  const warm: Record<Runtime, WorkspaceParams> = {
    runc: { ...(await env.workspace(env.uniqueId("bench-rt-turn-runc"))), runtime: "runc" },
    runsc: { ...(await env.workspace(env.uniqueId("bench-rt-turn-runsc"))), runtime: "runsc" },
  };
  const host = await createHostCodex(env.root, stub.baseUrl);
  const turns: Record<Runtime | "host", number[]> = { runc: [], runsc: [], host: [] };
  const timedTurn = async (arm: Runtime | "host"): Promise<number> => {
    if (arm !== "host") await service.ensureWorkspace(warm[arm]); // untimed: warm, or brought back
    stub.reset();
    stub.script({ kind: "command", cmd: "echo hi" }, { kind: "message", text: "done" });
    const start = performance.now();
    if (arm === "host") {
      const { events } = await host.startThread().runStreamed(PROMPT);
      const items: ThreadItem[] = [];
      let finalResponse = "";
      for await (const event of events) {
        if (event.type === "turn.failed") throw new Error(`host: turn failed: ${event.error.message}`);
        if (event.type === "item.completed") {
          items.push(event.item);
          if (event.item.type === "agent_message") finalResponse = event.item.text;
        }
      }
      checkTurn("host", items, finalResponse);
    } else {
      const result = await service.runTurn(
        { workspaceId: warm[arm].workspaceId, input: PROMPT },
        { onEvent: () => undefined },
      );
      if (result.status !== "completed")
        throw new Error(`${arm}: turn ${result.status}: ${result.error?.message ?? ""}`);
      checkTurn(arm, result.items, result.finalResponse);
    }
    const elapsed = performance.now() - start;
    if (stub.requests.length !== 2 || stub.pending !== 0)
      throw new Error(`${arm}: expected 2 model requests, the stub saw ${stub.requests.length}`);
    return elapsed;
  };
  const arms = ["runc", "runsc", "host"] as const;
  try {
    await service.ensureWorkspace(warm.runc);
    await service.ensureWorkspace(warm.runsc);
    for (let round = -options.warmup; round < options.turnN; round++) {
      const offset = ((round % arms.length) + arms.length) % arms.length;
      for (const arm of [...arms.slice(offset), ...arms.slice(0, offset)]) {
        const elapsed = await timedTurn(arm);
        if (round >= 0) turns[arm].push(elapsed);
      }
    }
  } finally {
    stub.reset();
    await host.dispose();
    for (const params of Object.values(warm))
      await service.removeWorkspace({ workspaceId: params.workspaceId, purgeHome: true }).catch(() => undefined);
  }

  const coldRunc = summarize(cold.runc);
  const coldRunsc = summarize(cold.runsc);
  const hostSummary = summarize(turns.host);
  const overhead = (runtime: Runtime): number => summarize(turns[runtime]).p50 - hostSummary.p50;
  return {
    title: "Runtimes: runc and gVisor (runsc), same run",
    tables: [
      "Cold ensure (service.ensureWorkspace of a fresh workspace, until the engine's start returned):\n" +
        formatTable(
          [
            latencyRow("runtime runc (baseline)", cold.runc, coldRunc, { target: "-", result: "-" }),
            latencyRow("runtime runsc (gVisor, ptrace)", cold.runsc, coldRunc, { target: "-", result: "-" }),
          ],
          LATENCY_COLUMNS,
        ),
      "Warm turn (echo hi, then a message; each turn a new thread):\n" +
        formatTable(
          [
            latencyRow("codex SDK on the host (baseline)", turns.host, hostSummary, { target: "-", result: "-" }),
            latencyRow("sidecar runTurn, runc workspace", turns.runc, hostSummary, { target: "-", result: "-" }),
            latencyRow("sidecar runTurn, runsc workspace", turns.runsc, hostSummary, { target: "-", result: "-" }),
          ],
          LATENCY_COLUMNS,
        ),
    ],
    checks: [
      {
        metric: "runsc cold ensure p50 (runc alongside)",
        measured: `${ms(coldRunsc.p50)} (runc ${ms(coldRunc.p50)}, ${times(ratio(coldRunsc.p50, coldRunc.p50))})`,
        target: "report",
        pass: true,
      },
      {
        metric: "runsc warm turn overhead p50 (runc alongside)",
        measured: `+${ms(overhead("runsc"))} (runc +${ms(overhead("runc"))})`,
        target: "report",
        pass: true,
      },
    ],
    notes: [
      `cold ensure: ${options.coldN} per runtime after ${options.warmup} warm-up round(s), order alternating; each container proven exec-ready and removed, untimed`,
      `warm turn overhead p50 over the host: runc ${ms(overhead("runc"))} (${times(ratio(summarize(turns.runc).p50, hostSummary.p50))}), runsc ${ms(overhead("runsc"))} (${times(ratio(summarize(turns.runsc).p50, hostSummary.p50))}); ${options.turnN} turns per arm, order rotating`,
      "runsc as scripts/install-runsc.sh registers it: --platform=ptrace (no KVM here), --network=none, --host-uds=open, --host-fifo=open",
    ],
  };
}
