/**
 * Section 2b, returning workspace: ensure of a paused workspace (thawed) vs of a stopped one
 * (started again) vs the engine's own start of the same container — what an ensure that starts a
 * container cannot beat, and the reason to freeze before stopping.
 *
 * One workspace, four arms (the engine's own unpause too: the floor of a thaw), interleaved (the
 * order rotates every round). Before each sample, untimed, the container is paused or stopped by
 * hand and the sidecar's record is seen to follow (the engine's events); after it, untimed, `true`
 * is exec'd in the container (proof it runs).
 */
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { runExec } from "../src/docker/exec.js";
import type { ContainerState } from "../src/service.js";
import type { BenchEnv } from "./harness.js";
import { LATENCY_COLUMNS, latencyRow, ms, verdict, type SectionResult } from "./report.js";
import { formatTable, summarize } from "./stats.js";

export interface PausedEnsureOptions {
  n: number;
  warmup: number;
}

type Arm = "paused" | "engine-unpause" | "stopped" | "engine-start";

const TARGET_MS = 50;

export async function benchPausedEnsure(env: BenchEnv, options: PausedEnsureOptions): Promise<SectionResult> {
  const { docker, sidecar } = env;
  const params = await env.workspace(env.uniqueId("bench-paused"));
  const { containerId } = await sidecar.service.ensureWorkspace(params);
  const container = docker.getContainer(containerId);

  /** Until the sidecar's record says `state` (its event stream caught up), within 30 s. */
  const recordSays = async (state: ContainerState): Promise<void> => {
    const end = Date.now() + 30_000;
    while (sidecar.workspaces.find(params.workspaceId)?.state !== state) {
      if (Date.now() > end) throw new Error(`the sidecar's record of ${params.workspaceId} never said ${state}`);
      await delay(5);
    }
  };
  const assertRuns = async (arm: Arm): Promise<void> => {
    const result = await runExec(docker, containerId, { cmd: ["true"] });
    if (result.exitCode !== 0)
      throw new Error(`${arm}: exec of true exited ${String(result.exitCode)}: ${result.stderr}`);
  };
  const timedEnsure = async (arm: Arm): Promise<number> => {
    const start = performance.now();
    const result = await sidecar.service.ensureWorkspace(params);
    const elapsed = performance.now() - start;
    if (result.created || result.containerId !== containerId) throw new Error(`${arm}: ensure made a new container`);
    return elapsed;
  };

  const sample = async (arm: Arm): Promise<number> => {
    let elapsed: number;
    if (arm === "paused" || arm === "engine-unpause") {
      await container.pause();
      await recordSays("paused");
      if (arm === "paused") {
        elapsed = await timedEnsure(arm);
      } else {
        const start = performance.now();
        await container.unpause();
        elapsed = performance.now() - start;
        await recordSays("running");
      }
    } else {
      await container.stop({ t: 5 });
      await recordSays("exited");
      if (arm === "stopped") {
        elapsed = await timedEnsure(arm);
      } else {
        const start = performance.now();
        await container.start();
        elapsed = performance.now() - start;
        await recordSays("running");
      }
    }
    await assertRuns(arm);
    return elapsed;
  };

  const samples: Record<Arm, number[]> = { paused: [], "engine-unpause": [], stopped: [], "engine-start": [] };
  const arms: Arm[] = ["paused", "engine-unpause", "stopped", "engine-start"];
  for (let round = -options.warmup; round < options.n; round++) {
    const offset = ((round % arms.length) + arms.length) % arms.length;
    for (const arm of [...arms.slice(offset), ...arms.slice(0, offset)]) {
      const elapsed = await sample(arm);
      if (round >= 0) samples[arm].push(elapsed);
    }
  }
  await sidecar.service.removeWorkspace({ workspaceId: params.workspaceId, purgeHome: true });

  const start = summarize(samples["engine-start"]);
  const paused = summarize(samples.paused);
  const pass = paused.p50 <= TARGET_MS;
  return {
    title: "2b. Returning workspace: ensure of a paused vs a stopped container",
    tables: [
      formatTable(
        [
          latencyRow("sidecar ensureWorkspace (paused: thaw)", samples.paused, start, {
            target: `p50 <= ${TARGET_MS} ms`,
            result: verdict(pass),
          }),
          latencyRow("docker unpause (engine API: the thaw's floor)", samples["engine-unpause"], start, {
            target: "-",
            result: "-",
          }),
          latencyRow("sidecar ensureWorkspace (stopped: start)", samples.stopped, start, { target: "-", result: "-" }),
          latencyRow("docker start (engine API, baseline)", samples["engine-start"], start, {
            target: "-",
            result: "-",
          }),
        ],
        LATENCY_COLUMNS,
      ),
    ],
    checks: [
      { metric: "ensure of a paused workspace p50", measured: ms(paused.p50), target: `<= ${TARGET_MS} ms`, pass },
    ],
    notes: [
      "one workspace; before each sample it is paused or stopped by hand (untimed) and the sidecar's record is seen to follow the engine's event",
      "resolved = ensureWorkspace returned (the container runs); each sample is then proven with an untimed exec of `true`",
      `arms interleaved with a rotating order; ${options.warmup} warm-up round(s) discarded`,
    ],
  };
}
