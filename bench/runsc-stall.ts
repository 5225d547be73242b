/**
 * `npm run stress:runsc`: many short turns in runsc workspaces, to measure how often a gVisor turn
 * stalls and where (docs/runtimes.md, "The random stall"). Each turn is the scripted two-request turn (`echo <marker>`, then a
 * message) with a short deadline; a turn that has not finished within --stall-ms is a stall. For
 * each stall it prints the stage the turn had reached and collects the sandbox's process list and
 * Sentry stacks (`runsc debug --stacks`) under --out.
 *
 *   npm run stress:runsc -- [--turns=200] [--parallel=2] [--load] [--stall-ms=20000]
 *                           [--runtime=runsc] [--watch=gvisor|off] [--out=DIR]
 *
 * --watch is the sidecar's ALIVE_CODEX_STALL_WATCH (default gvisor, as in production): with it, a
 * stalled turn ends sandbox_stalled about 25 s in; with --watch=off each stall is a timed-out turn.
 * --load keeps the machine's other core busy (a spinning child process) while the turns run.
 * --runtime names a runtime registered with the engine (e.g. a second runsc registration with
 * other flags, to compare them); it must be a gVisor runtime (named runsc or runsc-*).
 * Needs runsc registered (scripts/install-runsc.sh) and the runtime image (as npm run bench).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { ThreadEvent } from "@openai/codex-sdk";
import { resolveBaseImage } from "../src/docker/base-image.js";
import { createDockerClient } from "../src/docker/engine.js";
import { gvisorDiagnostics } from "../src/docker/gvisor.js";
import type { WorkspaceParams } from "../src/service.js";
import { functionCallOutput, inputMessages, type RecordedRequest } from "../test/support/responses-stub.js";
import { startBenchEnv } from "./harness.js";
import { formatTable, summarize } from "./stats.js";

interface StressArgs {
  turns: number;
  parallel: number;
  load: boolean;
  stallMs: number;
  runtime: string;
  watch: "gvisor" | "off";
  out: string;
}

function parseArgs(argv: readonly string[]): StressArgs {
  const args: StressArgs = {
    turns: 200,
    parallel: 2,
    load: false,
    stallMs: 20_000,
    runtime: "runsc",
    watch: "gvisor",
    out: path.resolve(".bench/runsc-stall"),
  };
  for (const arg of argv) {
    const [name, value = ""] = arg.split("=", 2) as [string, string?];
    const int = (): number => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1)
        throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(value)}`);
      return n;
    };
    if (name === "--turns") args.turns = int();
    else if (name === "--parallel") args.parallel = int();
    else if (name === "--stall-ms") args.stallMs = int();
    else if (name === "--load") args.load = true;
    else if (name === "--runtime" && /^runsc(-[a-z0-9-]+)?$/.test(value)) args.runtime = value;
    else if (name === "--out" && value !== "") args.out = path.resolve(value);
    else if (name === "--watch" && (value === "gvisor" || value === "off")) args.watch = value;
    else throw new Error(`unknown or bad argument ${JSON.stringify(arg)} (see the header of bench/runsc-stall.ts)`);
  }
  return args;
}

/**
 * Where a stalled turn stood, from its events and the model requests the stub saw for it:
 * - before-codex: nothing from codex (the launcher, the hand-over of argv and prompt, codex's start);
 * - first-model-request: codex started a thread, the stub saw no request (the socket forwarder);
 * - command-spawn: the stub answered with the command, codex never began it (item.started);
 * - command-exec: the command began and never ended;
 * - after-command: the command ended, the turn did not.
 */
export type StallStage = "before-codex" | "first-model-request" | "command-spawn" | "command-exec" | "after-command";

interface TurnOutcome {
  ms: number;
  stalled: boolean;
  stage: StallStage | null;
  status: string;
}

const MARKER = /stress-(\d+)-(\d+)/;

export function stageOf(events: readonly string[], requests: number): StallStage {
  if (events.includes("item.completed:command_execution")) return "after-command";
  if (events.includes("item.started:command_execution")) return "command-exec";
  if (requests >= 1) return "command-spawn";
  if (events.includes("thread.started")) return "first-model-request";
  return "before-codex";
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const dockerHost = process.env.DOCKER_HOST || "unix:///var/run/docker.sock";
  const t0 = Date.now();
  const progress = (line: string): void =>
    void process.stderr.write(`[stress +${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}\n`);
  const baseImage = await resolveBaseImage(createDockerClient(dockerHost), process.env.ALIVE_CODEX_BASE_IMAGE || null);
  const env = await startBenchEnv({
    image: process.env.ALIVE_CODEX_IMAGE || null,
    baseImage,
    dockerHost,
    progress,
    flags: { "--runtimes": `runc,${args.runtime}`, "--stall-watch": args.watch },
  });
  await fs.mkdir(args.out, { recursive: true });
  let load: ChildProcess | null = null;
  const outcomes: TurnOutcome[] = [];
  try {
    // Each request says which turn it belongs to by the marker in its prompt: the command echoes it,
    // and the request after the command's output ends the turn.
    const requestsByTurn = new Map<string, number>();
    env.stub.respondWith((request) => {
      const prompt = inputMessages(request as RecordedRequest)
        .map((m) => m.text)
        .join("\n");
      const marker = MARKER.exec(prompt)?.[0];
      if (marker === undefined) return undefined;
      requestsByTurn.set(marker, (requestsByTurn.get(marker) ?? 0) + 1);
      return functionCallOutput(request as RecordedRequest) === undefined
        ? { kind: "command", cmd: `echo ${marker}` }
        : { kind: "message", text: `done ${marker}` };
    });
    if (args.load) {
      load = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
      progress(`load: a spinning process (pid ${load.pid}) on the other core`);
    }
    const workspaces: WorkspaceParams[] = [];
    for (let i = 0; i < args.parallel; i++) {
      const params = { ...(await env.workspace(env.uniqueId(`stress-${i}`))), runtime: args.runtime };
      await env.sidecar.service.ensureWorkspace(params);
      workspaces.push(params);
    }
    let next = 0;
    // Ctrl-C (or SIGTERM): no new turn; the running ones finish, then the figures are printed.
    const stop = (): void => {
      progress("stopping after the turns in flight");
      args.turns = Math.min(args.turns, next);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    const worker = async (w: number): Promise<void> => {
      const params = workspaces[w] as WorkspaceParams;
      while (next < args.turns) {
        const n = next++;
        const marker = `stress-${w}-${n}`;
        const events: string[] = [];
        let settled = false;
        const start = performance.now();
        const turn = env.sidecar.service.runTurn(
          {
            workspaceId: params.workspaceId,
            input: `Run echo ${marker}, then say done.`,
            options: { timeoutMs: args.stallMs },
          },
          {
            onEvent: (_turnId, _seq, event) => {
              const e = event as ThreadEvent | { type: string };
              events.push("item" in e ? `${e.type}:${e.item.type}` : e.type);
            },
          },
        );
        // Just before the deadline, look at the sandbox while the stall is still there.
        const look = setTimeout(
          () => {
            if (settled) return;
            const stage = stageOf(events, requestsByTurn.get(marker) ?? 0);
            void gvisorDiagnostics(env.sidecar.engine, params.workspaceId, {
              containerName: `alive-codex-${params.workspaceId}`,
            }).then(
              (d) =>
                fs.writeFile(
                  path.join(args.out, `${marker}.txt`),
                  `stage ${stage}\nevents ${events.join(" ")}\n\n${d}`,
                ),
              (error: unknown) => progress(`${marker}: diagnostics failed: ${String(error)}`),
            );
          },
          Math.max(1000, args.stallMs - 3000),
        );
        const result = await turn;
        settled = true;
        clearTimeout(look);
        const ms = performance.now() - start;
        const stalled = result.status === "timed_out" || result.error?.code === "sandbox_stalled";
        const stage = stalled ? stageOf(events, requestsByTurn.get(marker) ?? 0) : null;
        outcomes.push({ ms, stalled, stage, status: result.error?.code ?? result.status });
        // The stall watch logged the sandbox's processes and stacks with its verdict: keep them.
        const verdict = env.problems.find((line) => line.includes(result.turnId) && line.includes("sandbox stalled"));
        if (verdict)
          await fs.writeFile(
            path.join(args.out, `${marker}.txt`),
            `stage ${stage}\nevents ${events.join(" ")}\n\n${String((JSON.parse(verdict) as { diagnostics?: unknown }).diagnostics)}`,
          );
        if (stalled)
          progress(
            `${marker}: STALL at ${stage} (${result.error?.code ?? result.status}; events ${events.join(" ")}); diagnostics in ${args.out}/${marker}.txt`,
          );
        else if (result.status !== "completed")
          progress(`${marker}: ${result.status} ${result.error?.code ?? ""} ${result.error?.message ?? ""}`);
        if (outcomes.length % 25 === 0)
          progress(`${outcomes.length}/${args.turns} turns, ${outcomes.filter((o) => o.stalled).length} stalled`);
        if (stalled || result.status !== "completed") await env.sidecar.service.ensureWorkspace(params);
      }
    };
    await Promise.all(workspaces.map((_, w) => worker(w)));
  } finally {
    load?.kill("SIGKILL");
    progress((await env.cleanup()).summary);
  }

  const stalls = outcomes.filter((o) => o.stalled);
  const completed = outcomes.filter((o) => o.status === "completed");
  const other = outcomes.length - stalls.length - completed.length;
  const s = summarize(completed.map((o) => o.ms));
  const byStage = new Map<string, number>();
  for (const o of stalls) byStage.set(o.stage ?? "?", (byStage.get(o.stage ?? "?") ?? 0) + 1);
  console.log(
    `runsc stall stress: runtime ${args.runtime}, stall watch ${args.watch}, ${outcomes.length} turns in ${args.parallel} workspace(s), ${args.load ? "with" : "without"} load on the other core, stall = no result within ${args.stallMs} ms or sandbox_stalled\n`,
  );
  console.log(
    formatTable(
      [
        {
          turns: String(outcomes.length),
          completed: String(completed.length),
          stalled: String(stalls.length),
          "stall rate": `${((100 * stalls.length) / Math.max(1, outcomes.length)).toFixed(2)} %`,
          "other failures": String(other),
          "p50 ms": s.n ? s.p50.toFixed(0) : "-",
          "p99 ms": s.n ? s.p99.toFixed(0) : "-",
        },
      ],
      ["turns", "completed", "stalled", "stall rate", "other failures", "p50 ms", "p99 ms"],
    ),
  );
  console.log(
    `\nstalls by stage: ${stalls.length === 0 ? "none" : [...byStage].map(([stage, n]) => `${stage} ${n}`).join(", ")}`,
  );
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
